"""``python -m bench`` (``make bench``): run every benchmark and print its table."""

from __future__ import annotations

from bench import event_logging, job_throughput, store_append


def main() -> None:
    event_logging.main()
    print()
    store_append.main([])
    print()
    job_throughput.main([])


if __name__ == "__main__":
    main()
