"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

A live embedded server (``modelkiln serve``: API + worker) in a subprocess; the browser opens
``/``, submits a small GAN job from the form, and watches its loss curves and samples arrive
over Server-Sent Events — including across a restart of the server. Screenshots go to
``test-output/`` (the README's ``docs/dashboard*.png`` are copies of them, made by hand).

Needs ``/usr/bin/chromium`` (``apt-get update && apt-get install -y chromium``); nothing is
downloaded from a browser vendor. Under ``CI=true`` a missing browser fails the test instead of
skipping it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.live import LiveServer

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "run `apt-get update && apt-get install -y chromium` (Debian's chromium package)"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"
GAN_FORM = {"dataset": {"name": "digits"}, "epochs": "30", "batch_size": "64"}


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: {INSTALL}")
    pytest.skip(f"{why}: {INSTALL}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("dashboard") / "home").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 980},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: Any, server: LiveServer) -> Iterator[Any]:
    index = httpx.get(f"{server.url}/", timeout=10)
    assert index.status_code == 200 and "dashboard.js" in index.text, (
        "GET / does not serve the dashboard: app/main.py must include app.dashboard.router"
    )
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/")
    page.wait_for_selector("#model-tabs button[data-model=gan]")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def submit_gan(page: Any, **overrides: str) -> str:
    """Fill the GAN form and submit it; returns the new job's id (from the page's URL)."""
    form = {**GAN_FORM, **overrides}
    page.click("#model-tabs button[data-model=gan]")
    page.select_option("#dataset-select", json.dumps(form.pop("dataset"), separators=(",", ":")))
    for name, value in form.items():
        page.fill(f"#submit-form input[name={name}]", value)
    page.click("#submit-btn")
    page.wait_for_function("location.hash.startsWith('#/jobs/')")
    job_id = str(page.evaluate("location.hash.split('/')[2]"))
    page.wait_for_selector("#job-view:not([hidden])")
    return job_id


def chart_points(page: Any, chart: str) -> int:
    return int(page.get_attribute(f".chart[data-chart={chart}]", "data-points") or 0)


def wait_points(page: Any, chart: str, at_least: int, timeout_s: float = 180) -> None:
    page.wait_for_function(
        "([c, n]) => +(document.querySelector(`.chart[data-chart=${c}]`)?.dataset.points ?? 0)"
        " >= n",
        arg=[chart, at_least],
        timeout=timeout_s * 1000,
    )


def wait_image(page: Any, selector: str, timeout_s: float = 180) -> None:
    page.wait_for_function(
        "(sel) => { const i = document.querySelector(sel);"
        " return !!i.getAttribute('src') && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=timeout_s * 1000,
    )


def wait_status(page: Any, status: str, timeout_s: float = 300) -> None:
    page.wait_for_selector(f"#job-title .badge.{status}", timeout=timeout_s * 1000)


def loss_rows(server: LiveServer, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}/losses", params={"limit": 10000})
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


def screenshot(page: Any, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_submit_a_gan_and_watch_it_learn(page: Any, server: LiveServer) -> None:
    job_id = submit_gan(page)
    # The job list shows it, with its model and dataset.
    row = page.locator(f"#jobs-table tr[data-job='{job_id}']")
    row.wait_for()
    assert "gan" in row.inner_text() and "digits" in row.inner_text()

    # Live curves: D and G losses together, D(x) against D(G(z)); and a sample grid.
    wait_points(page, "losses", 20)
    wait_points(page, "dout", 20)
    wait_image(page, "#samples-img")
    legend = page.inner_text(".chart[data-chart=losses] .legend")
    assert "D loss" in legend and "G loss" in legend
    assert "D(x)" in page.inner_text(".chart[data-chart=dout] .legend")
    screenshot(page, "dashboard-running.png")

    # To the end: every step drawn exactly once, the progress animation, the final grid.
    wait_status(page, "succeeded")
    wait_image(page, "#progress-img")
    rows = loss_rows(server, job_id)
    page.wait_for_function(
        "(n) => +document.querySelector('.chart[data-chart=losses]').dataset.points === n",
        arg=2 * len(rows),
        timeout=10_000,
    )
    assert page.get_attribute("#cancel-btn", "disabled") is not None
    assert page.get_attribute("#delete-btn", "disabled") is None

    # "New seed" draws a different batch from the same generator.
    before = page.get_attribute("#samples-img", "src")
    page.click("#new-seed-btn")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#samples-img');"
        " return i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }",
        arg=before,
        timeout=30_000,
    )
    time.sleep(0.5)  # let the canvas settle for the picture
    screenshot(page, "dashboard.png")  # the README's docs/dashboard*.png are copies of these


def test_the_job_page_keeps_following_across_a_server_restart(
    page: Any, server: LiveServer
) -> None:
    job_id = submit_gan(page, epochs="40")
    wait_points(page, "losses", 40)
    seen = chart_points(page, "losses")

    server.stop()  # the worker checkpoints the job and re-queues it
    page.wait_for_selector("#conn.down", timeout=30_000)
    server.start()

    # EventSource reconnects with Last-Event-ID and the curves grow again, without a gap or
    # a duplicate: in the end the chart holds exactly the events in the store.
    wait_points(page, "losses", seen + 20, timeout_s=240)
    wait_status(page, "succeeded", timeout_s=400)
    rows = loss_rows(server, job_id)
    assert len({r["seq"] for r in rows}) == len(rows)
    page.wait_for_function(
        "(n) => +document.querySelector('.chart[data-chart=losses]').dataset.points === n",
        arg=2 * len(rows),
        timeout=10_000,
    )
    screenshot(page, "dashboard-after-restart.png")

    # Delete from the page: confirm the dialog, the job is gone from the list.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-btn")
    page.wait_for_function("location.hash === '#/'")
    page.wait_for_selector(f"#jobs-table tr[data-job='{job_id}']", state="detached")
    assert httpx.get(f"{server.url}/v1/jobs/{job_id}").status_code == 404


# -- a finished long GAN, opened afterwards; the job list at a laptop-sized viewport ----------

LONG_GAN = {
    "model": "gan",
    "dataset": {"name": "digits"},
    # 1437 training images in batches of 1024: two steps an epoch, so 120 epochs (and 120
    # checkpoint + 120 progress_image events to replay) take a few seconds on a CPU.
    "hyperparams": {"epochs": 120, "batch_size": 1024, "hidden": 16, "latent_dim": 8},
}


def wait_job(server: LiveServer, job_id: str, status: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] == status:
            return
        assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}"
        time.sleep(0.3)


def test_opening_a_finished_long_gan_loads_its_images_a_few_times_not_per_event(
    page: Any, server: LiveServer
) -> None:
    response = httpx.post(f"{server.url}/v1/jobs", json=LONG_GAN, timeout=10)
    response.raise_for_status()
    job_id = response.json()["id"]
    wait_job(server, job_id, "succeeded")
    gifs: list[str] = []
    samples: list[str] = []

    def count(request: Any) -> None:
        if f"/v1/jobs/{job_id}/progress.gif" in request.url:
            gifs.append(request.url)
        elif f"/v1/jobs/{job_id}/samples" in request.url:
            samples.append(request.url)

    page.on("request", count)
    page.evaluate("(id) => { location.hash = `#/jobs/${id}`; }", job_id)
    wait_status(page, "succeeded", timeout_s=30)
    wait_image(page, "#samples-img", timeout_s=30)
    wait_image(page, "#progress-img", timeout_s=30)
    time.sleep(8)  # the whole history is replayed well within this
    page.remove_listener("request", count)
    assert 1 <= len(gifs) <= 3, gifs
    assert 1 <= len(samples) <= 3, samples


def test_the_job_list_fits_its_panel_with_a_long_upload_name(page: Any, server: LiveServer) -> None:
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(60)]
    upload = httpx.post(
        f"{server.url}/v1/datasets",
        files={"file": ("points.csv", ("\n".join(rows) + "\n").encode(), "text/csv")},
        data={"name": "a-rather-long-dataset-name-from-a-user"},
        timeout=30,
    )
    upload.raise_for_status()
    body = {
        "model": "neuron",
        "name": "a job with a long descriptive name that will not fit",
        "dataset": {"id": upload.json()["id"]},
        "hyperparams": {"epochs": 1},
    }
    job = httpx.post(f"{server.url}/v1/jobs", json=body, timeout=10)
    job.raise_for_status()
    job_id = job.json()["id"]
    page.set_viewport_size({"width": 1400, "height": 1000})
    try:
        row = page.locator(f"#jobs-table tr[data-job='{job_id}']")
        row.wait_for(timeout=15_000)
        assert "upload:" in row.inner_text()
        panel = page.locator("#jobs-table").locator("xpath=ancestor::*[contains(@class,'card')][1]")
        panel_box = panel.bounding_box()
        age_box = row.locator("td").last.bounding_box()
        assert panel_box and age_box
        assert age_box["x"] >= panel_box["x"]
        assert age_box["x"] + age_box["width"] <= panel_box["x"] + panel_box["width"], (
            age_box,
            panel_box,
        )
        widths = panel.evaluate("(p) => [p.scrollWidth, p.clientWidth]")
        assert widths[0] <= widths[1], widths
        # A clipped cell still says all of itself on hover.
        dataset_cell = row.locator("td").nth(2)
        assert dataset_cell.get_attribute("title") == f"upload:{upload.json()['id']}"
        screenshot(page, "dashboard-jobs-list.png")
    finally:
        page.set_viewport_size({"width": 1400, "height": 980})
