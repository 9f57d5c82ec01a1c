"""The explorer page in a real Chromium (Debian's, driven by Playwright) against a real server on
the default model: what a user does, click by click, and what they must then see.

Skipped only when no Chromium is installed and NETLOUPE_REQUIRE_BROWSER is unset (.ci/run sets
it). Screenshots go to $NETLOUPE_SCREENSHOTS, or to a temporary folder."""

import os
import shutil
from pathlib import Path

import pytest

import netloupe as nl
from model_state import snapshot
from netloupe.explorer.app import serve

CHROMIUM = os.environ.get("NETLOUPE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = bool(os.environ.get("NETLOUPE_REQUIRE_BROWSER"))
if not CHROMIUM and not REQUIRED:
    pytest.skip("no Chromium here (install Debian's chromium, or set NETLOUPE_REQUIRE_BROWSER to fail instead)",
                allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
TIMEOUT_MS = 120_000  # a scan or a render on two busy CPU cores


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("NETLOUPE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The default model (some parameters frozen, so that a reset to defaults would show), a data
    folder of sample crops, and a server; the model's state as it was before the session."""
    model = nl.load_model()
    for p in list(model.module.parameters())[::3]:
        p.requires_grad_(False)
    before = snapshot(model.module)
    data = tmp_path_factory.mktemp("data")
    dataset = nl.samples.dataset(12, size=160)
    for i in range(len(dataset)):
        dataset[i].save(data / f"crop{i:02d}.png")
    expected = {name: [label for label, _ in model.predict(nl.samples.image(name), top_k=5)[0]]
                for name in ("chelsea", "coffee", "rocket")}  # before the server shares the model
    explorer = nl.explorer.Explorer(model, data=data, cache_dir=tmp_path_factory.mktemp("cache"), render_steps=24)
    with serve(explorer) as url:
        yield url, explorer, before, expected


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "NETLOUPE_REQUIRE_BROWSER is set but no Chromium is installed: apt-get install chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, site):
    context = browser.new_context(viewport={"width": 1500, "height": 1150})
    context.grant_permissions(["camera"], origin=site[0])
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(site[0] + "/")
    pg.wait_for_selector("#preds li .pred-label")
    wait_loaded(pg, "#grid-img")
    yield pg
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def wait_loaded(pg, selector):
    """Wait until an <img> is shown and has its picture."""
    pg.wait_for_function("s => { const i = document.querySelector(s); return i && !i.hidden && i.complete "
                         "&& i.naturalWidth > 0; }", arg=selector)


def shown_predictions(pg, ref):
    pg.wait_for_selector(f'#preds[data-input="{ref}"]')
    return pg.locator("#preds .pred-label").all_inner_texts()


def test_picking_a_sample_shows_it_and_its_predictions(page, site, shots):
    expected = site[3]
    assert shown_predictions(page, "sample:chelsea") == expected["chelsea"]
    page.click('#samples button[data-input="sample:coffee"]')
    assert shown_predictions(page, "sample:coffee") == expected["coffee"]
    wait_loaded(page, "#input-img-0")
    assert page.get_attribute("#input-img-0", "data-input") == "sample:coffee"
    page.screenshot(path=str(shots / "explorer_sample.png"), full_page=True)


def choose_unit(pg, channel):
    """Click the tile of ``channel`` in the layer grid; returns the layer's name."""
    layer = pg.inner_text("#layer-name")
    box = pg.locator("#grid-img").bounding_box()
    pg.mouse.click(box["x"] + 15, box["y"] + 15)  # inside the first tile: channel 0
    pg.wait_for_function("t => document.querySelector('#unit-name').textContent === t", arg=f"{layer}:0")
    for _ in range(channel):
        pg.keyboard.press("ArrowRight")  # the toolbox's keys: the next channel
    pg.wait_for_function("t => document.querySelector('#unit-name').textContent === t", arg=f"{layer}:{channel}")
    return layer


def test_a_unit_shows_its_views_and_its_scan_and_render_start_by_themselves(page, site, shots):
    layer = choose_unit(page, 1)
    wait_loaded(page, "#unit-map")
    wait_loaded(page, "#unit-channel")  # the channel's own map, enlarged in blocks, with its colour bar
    channel = page.evaluate("() => { const i = document.querySelector('#unit-channel'); return [i.naturalWidth, "
                            "i.naturalHeight, i.getBoundingClientRect().width]; }")
    assert channel[1] >= 160 and channel[2] == channel[0]  # large, and shown at its own size (no blur, no cut labels)
    for method in ("saliency", "guided_backprop"):
        wait_loaded(page, f'#backprops img[data-method="{method}"]')
    # no button pressed: the shown layer's scan and the unit's render run by themselves, with progress
    page.wait_for_function("() => document.querySelectorAll('#patch-grid img.patch').length === 9 && "
                           "[...document.querySelectorAll('#patch-grid img.patch')].every(i => !i.hidden && i.complete "
                           "&& i.naturalWidth > 0)")
    assert "over 12 images" in page.inner_text("#unit-stats")
    assert page.locator("#unit-corr button.chip").count() > 0  # its most correlated channels
    widths = page.evaluate("() => [...document.querySelectorAll('#patch-grid img.patch')].map(i => "
                           "i.getBoundingClientRect().width)")
    assert min(widths) >= 100  # a readable size (they were about 35 px)
    captions = page.locator("#patch-grid figcaption").all_inner_texts()
    assert len(captions) == 9 and all("crop" in c and "·" in c for c in captions)
    assert float(page.evaluate("parseFloat(getComputedStyle(document.querySelector('#patch-grid figcaption')).fontSize)")) >= 11
    wait_loaded(page, "#render-slot img")
    assert page.is_visible("#render-again") and page.is_visible("#scan-again")  # to run them again
    page.locator("#unit-panel").screenshot(path=str(shots / "explorer_unit.png"))
    page.screenshot(path=str(shots / "explorer.png"), clip={"x": 0, "y": 0, "width": 1500, "height": 1150})

    page.click("#patch-grid figure[data-index='0'] button")  # a patch, enlarged
    wait_loaded(page, "#patch-big")
    assert page.evaluate("document.querySelector('#patch-dialog').open")
    assert page.evaluate("document.querySelector('#patch-big').naturalHeight") > 300
    page.click("#patch-close")
    assert not page.evaluate("document.querySelector('#patch-dialog').open")
    assert layer


def test_a_new_unit_never_shows_the_last_units_statistics(page):
    layer = choose_unit(page, 0)
    page.wait_for_function("t => document.querySelector('#unit-body').dataset.unit === t", arg=f"{layer}:0")
    # the arrow key clears the panel in the same instant it changes the name
    state = page.evaluate("""() => {
        document.querySelector('#grid-wrap').focus();
        document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight', bubbles: true }));
        return [document.querySelector('#unit-name').textContent, document.querySelector('#unit-stats').textContent,
                document.querySelector('#unit-body').dataset.unit, document.querySelector('#unit-map').classList.contains('stale'),
                document.querySelectorAll('#unit-corr button').length];
    }""")
    assert state == [f"{layer}:1", "loading…", "", True, 0]
    page.wait_for_function("t => document.querySelector('#unit-body').dataset.unit === t", arg=f"{layer}:1")
    # an answer that comes late, for a unit no longer chosen, is dropped
    held = []
    page.route("**/api/unit?*", lambda route: held.append(route))
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(400)  # the selection rests: unit 2's statistics are asked for, and held
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(400)
    assert len(held) == 2
    held[1].continue_()  # unit 3's answer first, then unit 2's
    page.wait_for_function("t => document.querySelector('#unit-body').dataset.unit === t", arg=f"{layer}:3")
    held[0].continue_()
    page.wait_for_timeout(500)
    assert page.evaluate("document.querySelector('#unit-body').dataset.unit") == f"{layer}:3"
    assert page.inner_text("#unit-name") == f"{layer}:3"
    page.unroute("**/api/unit?*")


def test_an_upload_changes_the_predictions(page, site, tmp_path):
    nl.samples.image("rocket").save(tmp_path / "rocket.png")
    before = shown_predictions(page, "sample:chelsea")
    page.set_input_files("#upload", str(tmp_path / "rocket.png"))
    page.wait_for_function("() => (document.querySelector('#preds').dataset.input || '').startsWith('upload:')")
    after = page.locator("#preds .pred-label").all_inner_texts()
    assert after == site[3]["rocket"] and after != before


def test_the_webcam_streams_frames_through_the_views(page, shots):
    page.click("#webcam-toggle")
    page.wait_for_function("() => Number(document.querySelector('#webcam-status').dataset.frames || 0) >= 3")
    assert page.evaluate("document.body.dataset.input").startswith("upload:")
    wait_loaded(page, "#grid-img")
    page.screenshot(path=str(shots / "explorer_webcam.png"), full_page=True)
    page.click("#webcam-toggle")
    assert page.get_attribute("#webcam-toggle", "aria-pressed") == "false"


def test_class_and_dropout_views(page):
    for box in page.locator("#class-methods input").all():
        if box.get_attribute("value") not in ("saliency", "grad_cam"):
            box.uncheck()
    page.click("#class-form button[type=submit]")
    for method in ("saliency", "grad_cam"):
        wait_loaded(page, f'#class-maps figure[data-method="{method}"] img')
    assert page.locator("#class-maps figure").count() == 2
    page.click("#dropout-form button[type=submit]")
    wait_loaded(page, "#dropout-slot img")


def test_the_data_browser_pages_through_the_data(page):
    page.click("#data-open")
    page.wait_for_selector("#data-items button.data-item")
    assert page.inner_text("#data-count") == "12 images"
    page.click('#data-items button[data-input="data:3"]')
    shown_predictions(page, "data:3")


def test_the_session_left_the_model_as_found(site):
    """Once the requests the pages sent before they closed have ended (each holds the live model
    under the explorer's lock while its probe is on it), the model is as it was."""
    _, explorer, before, _ = site
    with explorer._lock:
        assert snapshot(explorer.model.module) == before
