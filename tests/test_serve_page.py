"""The explorer page at ``GET /`` in a real headless browser (system Chromium + selenium).

The server is the real app (:func:`bertkit.serve.create_app`) over the tiny random model and
a tiny 2-label classifier, run by uvicorn on a free local port. Each test types into the
page, clicks, and reads the rendered values back from their ids / data attributes, then
compares them with what the same server's JSON API answers for the same input.

Needs selenium, fastapi, uvicorn and a system ``chromium`` + ``chromedriver`` (Debian:
``apt-get install chromium chromium-driver``); skipped with the reason otherwise. Never
downloads a browser. A screenshot of the filled page is saved to the test's tmp folder and,
when ``BERTKIT_SCREENSHOT_DIR`` is set, there too (CI keeps it as an artifact).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import build_tiny_model

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("fastapi", reason="fastapi is not installed (pip install 'bertkit[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'bertkit[serve]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="system chromium/chromedriver not found (Debian: apt-get install chromium chromium-driver)",
), pytest.mark.slow]  # a server and a browser per module: long, and in `make test`

BANK = ("After stealing money from the bank vault, the bank robber was seen fishing on the "
        "Mississippi river bank.")
WAIT_S = 20


# ---- server ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of the real app on a free port (uvicorn in a thread; stopped at the end)."""
    from bertkit.serve import create_app

    root = tmp_path_factory.mktemp("serve_page")
    model = build_tiny_model(root / "tiny")
    clf = build_tiny_model(root / "clf", num_labels=2)
    score = build_tiny_model(root / "score", num_labels=1)  # one output: a regression model
    app = create_app(model=model, classifiers={"tiny": clf, "score": score})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT_S
    while True:  # ready once the model is loaded
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)
    yield base
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def api(base, path, body=None):
    """(status, JSON) of one request to the server, errors included."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---- browser ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    """A headless Chromium with the page loaded and the model information shown."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
                "--window-size=1280,1600"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.get(server + "/")
        wait_status(driver, "model-info")
        yield driver
    finally:
        driver.quit()


def wait_status(driver, element_id, until=None):
    """Wait until element ``element_id`` is done (data-status) and ``until(driver)`` holds;
    fail with the page's error message when the request failed."""
    el = driver.find_element(By.ID, element_id)

    def settled(d):
        status = el.get_attribute("data-status")
        if status == "error":
            return True
        return status == "done" and (until is None or until(d))

    WebDriverWait(driver, WAIT_S).until(settled)
    if el.get_attribute("data-status") == "error":
        pytest.fail(f"{element_id}: {driver.find_element(By.ID, 'error-message').text}")
    return el


def type_into(driver, element_id, text):
    el = driver.find_element(By.ID, element_id)
    el.clear()
    if text:
        el.send_keys(text)


def read_matrix(driver, table_id, attr):
    """The matrix of ``attr`` values from a heat-map table's cells, row by row."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    out = []
    for i, tr in enumerate(rows):
        cells = tr.find_elements(By.CSS_SELECTOR, "td[data-col]")
        assert [int(c.get_attribute("data-row")) for c in cells] == [i] * len(cells)
        assert [int(c.get_attribute("data-col")) for c in cells] == list(range(len(cells)))
        out.append([float(c.get_attribute(attr)) for c in cells])
    return out


def assert_matrix_close(got, want, tol=1e-6):
    assert len(got) == len(want) and all(len(a) == len(b) for a, b in zip(got, want))
    for a, b in zip(got, want):
        for x, y in zip(a, b):
            assert math.isclose(x, y, abs_tol=tol), (got, want)


def screenshot(driver, name, folder):
    """Save a full-page PNG to ``folder`` and to $BERTKIT_SCREENSHOT_DIR when set."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height + 120, 800), 8000))
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    png = driver.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    for where in filter(None, [str(folder), os.environ.get("BERTKIT_SCREENSHOT_DIR")]):
        os.makedirs(where, exist_ok=True)
        with open(os.path.join(where, name), "wb") as f:
            f.write(png)
    return png


# ---- tests -----------------------------------------------------------------------------
def test_page_is_served_with_local_assets_only(server, page):
    # No build step and nothing from the internet: every script/style is a relative local path.
    with urllib.request.urlopen(server + "/") as r:
        html = r.read().decode("utf-8")
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
    assert "http://" not in html.split("<body")[0] and "https://" not in html
    for asset in ("static/app.js", "static/style.css"):
        with urllib.request.urlopen(f"{server}/{asset}") as r:
            assert r.status == 200
    # Accessible: every control has a <label for=...>.
    labelled = {lab.get_attribute("for") for lab in page.find_elements(By.TAG_NAME, "label")}
    controls = page.find_elements(By.CSS_SELECTOR, "input, textarea, select")
    assert controls and all(c.get_attribute("id") in labelled for c in controls)
    info = page.find_element(By.ID, "model-info")
    _, models = api(server, "/v1/models")
    assert info.get_attribute("data-model") == models["model"]
    assert info.get_attribute("data-dimension") == str(models["dimension"])


def test_tokens_and_attention_match_the_api(server, page):
    text, pair = "the bank robber ran", "the cat sat on the mat"
    type_into(page, "text-input", text)
    type_into(page, "pair-input", pair)
    page.find_element(By.ID, "tokenize-btn").click()
    wait_status(page, "tokens-section")

    _, want = api(server, "/v1/tokenize", {"text": text, "pair": pair})
    rows = page.find_elements(By.CSS_SELECTOR, "#tokens-table tbody tr")
    assert [r.get_attribute("data-token") for r in rows] == want["tokens"]
    assert [int(r.get_attribute("data-token-id")) for r in rows] == want["input_ids"]
    assert [int(r.get_attribute("data-segment-id")) for r in rows] == want["token_type_ids"]
    assert 1 in want["token_type_ids"]  # the pair really reached the server
    assert [r.find_element(By.CSS_SELECTOR, "td.token").text for r in rows] == want["tokens"]

    # First heat-map: layer 1, average of the heads (head null).
    table = page.find_element(By.ID, "attention-table")
    wait_status(page, "attention-block", lambda d: table.get_attribute("data-layer") == "1")
    _, avg = api(server, "/v1/attention", {"text": text, "pair": pair, "layer": 1, "head": None})
    assert table.get_attribute("data-head") == "average"
    assert_matrix_close(read_matrix(page, "attention-table", "data-weight"), avg["weights"])
    layers = [o.get_attribute("value") for o in Select(page.find_element(By.ID, "layer-select")).options]
    assert layers == [str(i) for i in range(1, avg["num_layers"] + 1)]

    # Pick layer 2, head 1: the table re-renders with that head's weights.
    Select(page.find_element(By.ID, "layer-select")).select_by_value("2")
    wait_status(page, "attention-block", lambda d: table.get_attribute("data-layer") == "2")
    Select(page.find_element(By.ID, "head-select")).select_by_value("1")
    wait_status(page, "attention-block", lambda d: table.get_attribute("data-head") == "1")
    _, one = api(server, "/v1/attention", {"text": text, "pair": pair, "layer": 2, "head": 1})
    got = read_matrix(page, "attention-table", "data-weight")
    assert_matrix_close(got, one["weights"])
    # The two heat-maps differ by far more than the tolerance, so the comparison tells them apart.
    assert max(abs(x - y) for a, b in zip(one["weights"], avg["weights"]) for x, y in zip(a, b)) > 1e-4
    header = [th.get_attribute("textContent")
              for th in page.find_elements(By.CSS_SELECTOR, "#attention-table thead th")]
    assert header == one["tokens"]


def test_similarity_matrix_matches_the_api(server, page):
    sentences = ["the cat sat on the mat", "a dog ran in the park", "stock price won"]
    type_into(page, "sentences-input", "\n".join(sentences) + "\n\n")  # blank lines are dropped
    page.find_element(By.ID, "similarity-btn").click()
    wait_status(page, "similarity-section")
    _, want = api(server, "/v1/similarity", {"sentences": sentences})
    assert_matrix_close(read_matrix(page, "similarity-table", "data-value"), want["matrix"])
    row_labels = [th.get_attribute("textContent")
                  for th in page.find_elements(By.CSS_SELECTOR, "#similarity-table tbody th")]
    assert row_labels == want["labels"]


def test_same_word_in_context_matches_the_api(server, page):
    type_into(page, "word-texts-input", BANK)
    type_into(page, "word-input", "bank")
    page.find_element(By.ID, "words-btn").click()
    wait_status(page, "words-section")
    _, want = api(server, "/v1/similarity", {"texts": [BANK], "word": "bank"})
    assert want["kind"] == "words" and len(want["labels"]) == 3  # the three "bank"s
    got = read_matrix(page, "words-table", "data-value")
    assert len(got) == 3
    assert_matrix_close(got, want["matrix"])


def test_class_probabilities_match_the_api(server, page, tmp_path):
    section = page.find_element(By.ID, "classify-section")
    assert section.is_displayed()
    names = [o.get_attribute("value") for o in Select(page.find_element(By.ID, "classifier-select")).options]
    assert names == ["tiny", "score"]
    text = "a great movie with a boring plot"
    type_into(page, "classify-input", text)
    page.find_element(By.ID, "classify-btn").click()
    wait_status(page, "classify-section")
    _, want = api(server, "/v1/classify", {"input": text, "classifier": "tiny"})
    rows = page.find_elements(By.CSS_SELECTOR, "#classify-table tbody tr")
    assert [r.get_attribute("data-label") for r in rows] == want["labels"]
    probs = want["data"][0]["probabilities"]
    for r in rows:
        assert math.isclose(float(r.get_attribute("data-prob")), probs[r.get_attribute("data-label")],
                            abs_tol=1e-9)
    predicted = [r.get_attribute("data-label") for r in rows if r.get_attribute("data-predicted") == "true"]
    assert predicted == [want["data"][0]["label"]]
    # Every section is filled now: keep a picture of the page.
    screenshot(page, "explorer.png", tmp_path)
    assert (tmp_path / "explorer.png").stat().st_size > 10_000


def test_a_regression_model_shows_its_number(server, page):
    Select(page.find_element(By.ID, "classifier-select")).select_by_value("score")
    text = "a great movie with a boring plot"
    type_into(page, "classify-input", text)
    page.find_element(By.ID, "classify-btn").click()
    wait_status(page, "classify-section")
    _, want = api(server, "/v1/classify", {"input": text, "classifier": "score"})
    assert want["task"] == "regression"
    rows = page.find_elements(By.CSS_SELECTOR, "#classify-table tbody tr")
    assert len(rows) == 1
    assert math.isclose(float(rows[0].get_attribute("data-value")), want["data"][0]["value"], abs_tol=1e-9)
    caption = page.find_element(By.CSS_SELECTOR, "#classify-table caption").get_attribute("textContent")
    assert caption == f"score: {want['data'][0]['value']:.3f}"
    Select(page.find_element(By.ID, "classifier-select")).select_by_value("tiny")


def test_api_error_is_shown_in_the_message_box(server, page):
    box = page.find_element(By.ID, "error-message")
    assert not box.is_displayed()
    type_into(page, "text-input", "")
    type_into(page, "pair-input", "")
    page.find_element(By.ID, "tokenize-btn").click()
    section = page.find_element(By.ID, "tokens-section")
    WebDriverWait(page, WAIT_S).until(lambda d: section.get_attribute("data-status") == "error")
    status, want = api(server, "/v1/tokenize", {"text": ""})
    assert status == 422
    WebDriverWait(page, WAIT_S).until(lambda d: box.is_displayed())
    assert want["error"]["message"] in box.text
    assert box.get_attribute("data-status") == "422"
    # A good request afterwards clears the message.
    type_into(page, "text-input", "the sun")
    page.find_element(By.ID, "tokenize-btn").click()
    wait_status(page, "tokens-section", lambda d: not box.is_displayed())
