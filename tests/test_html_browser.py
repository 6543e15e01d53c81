"""The backprop page in a real browser: headless Chromium driven by Selenium.

Clicks through every step of a small graph's backward, reads the gradients the page displays and
compares them with the engine's; checks that the page made no request at all. Skipped, with the
reason, when Selenium, Chromium or chromedriver is missing (`.ci/install_browser` installs them).
"""

import json
import os
import re
import shutil
import tempfile

import numpy as np
import pytest

from autograd import Tensor
from autograd.debug import to_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _need_browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium, or the 'browser' extra)")
    if not CHROMIUM or not DRIVER:
        pytest.skip("no chromium / chromedriver on PATH (apt-get install chromium chromium-driver)")


def start_browser(width=1500, height=900):
    """Headless Chromium with the given window size; nothing is downloaded (the driver path is
    given, so Selenium Manager never runs) and every background request of the browser is off."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tinyllm-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver._tinyllm_profile = profile
    return driver


def stop_browser(driver):
    driver.quit()
    shutil.rmtree(driver._tinyllm_profile, ignore_errors=True)


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|-?inf|nan", text)]


def _graph():
    rng = np.random.default_rng(3)
    w = Tensor(rng.normal(size=(2, 2)), requires_grad=True, name="w")
    x = Tensor(rng.normal(size=(2,)), name="x")
    b = Tensor(rng.normal(size=(2,)), requires_grad=True, name="b")
    h = (w @ x + b).tanh()
    h.name = "h"
    loss = (h * h).sum()  # h is used twice: its gradient arrives in two parts
    loss.name = "loss"
    return loss, w, b


@pytest.fixture
def browser():
    driver = start_browser()
    yield driver
    stop_browser(driver)


def test_clicking_through_every_step_shows_the_engine_gradients(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    loss, w, b = _graph()
    expected = _expected_steps()
    path = to_html(loss, tmp_path / "backprop.html")
    browser.get_log("performance")  # drop what the browser's own start page loaded
    browser.get(path_url(path))
    by_id = browser.find_element
    assert by_id(By.ID, "stepno").text == f"step 0 / {len(expected)}"
    for k, (call, grad_out, sent) in enumerate(expected, start=1):
        by_id(By.ID, "next").click()
        assert by_id(By.ID, "stepno").text == f"step {k} / {len(expected)}"
        assert by_id(By.ID, "stephead").text == f"Step {k}: {call}"
        np.testing.assert_allclose(_numbers(by_id(By.ID, "gradout").text), grad_out.ravel(),
                                   rtol=1e-3)
        boxes = browser.find_elements(By.CSS_SELECTOR, "#steppanel .send")
        assert [box.get_attribute("data-input") for box in boxes] == [s[0] for s in sent]
        for box, (_label, slot, after, twice) in zip(boxes, sent):
            text = box.find_element(By.ID, f"after-{slot}").text
            np.testing.assert_allclose(_numbers(text), after.ravel(), rtol=1e-3)
            assert ("used by more than one op" in box.text) == twice
        active = browser.find_elements(By.CSS_SELECTOR, "g.op.active")
        assert len(active) == 1
    # the last step: every leaf shows its .grad, and the check table holds it in full precision
    for leaf in (w, b):
        box = by_id(By.ID, "v" + str(_value_id(path, leaf.name)))
        assert "final" in box.get_attribute("class") and ".grad =" in box.text
    # back, the slider and the keyboard move the same way
    by_id(By.ID, "back").click()
    assert by_id(By.ID, "stepno").text == f"step {len(expected) - 1} / {len(expected)}"
    by_id(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    assert by_id(By.ID, "stepno").text == f"step {len(expected) - 2} / {len(expected)}"
    by_id(By.ID, "end").click()
    assert by_id(By.ID, "stepno").text == f"step {len(expected)} / {len(expected)}"
    browser.execute_script("const s = document.getElementById('slider'); s.value = 1;"
                           "s.dispatchEvent(new Event('input'));")
    assert by_id(By.ID, "stepno").text == f"step 1 / {len(expected)}"

    by_id(By.ID, "checkbtn").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#checktable tr[data-leaf]")
    assert len(rows) == w.size + b.size
    for row in rows:
        leaf = {"w": w, "b": b}[row.get_attribute("data-leaf")]
        cells = row.find_elements(By.TAG_NAME, "td")
        index = tuple(int(i) for i in _numbers(cells[1].text))
        assert float(cells[2].text) == leaf.grad[index]  # exactly the engine's number
        assert float(cells[3].text) == pytest.approx(leaf.grad[index], rel=1e-6, abs=1e-9)
        assert "ok" in cells[4].get_attribute("class")
    _assert_no_request_left(browser, path_url(path))


def _expected_steps():
    """What each step must show, from a fresh copy of the same graph, for the comparison."""
    from autograd.debug import backward_steps

    loss, _, _ = _graph()
    out, so_far, counts = [], {}, {}
    for step in backward_steps(loss):
        sent = []
        labels = step._labels[1]
        for slot, (label, g) in enumerate(zip(labels, step.grad_inputs)):
            if g is None:
                continue
            counts[label] = counts.get(label, 0) + 1
            so_far[label] = g if label not in so_far else so_far[label] + g
            sent.append((label, slot, so_far[label].copy(), counts[label] > 1))
        out.append((step._call(), step.grad_output.copy(), sent))
    return out


def _value_id(path, label):
    text = open(path, encoding="utf-8").read()
    record = json.loads(re.search(r'id="record">(.*?)</script>', text, re.S).group(1))
    return next(v["id"] for v in record["values"] if v["label"] == label)


def path_url(path):
    return "file://" + os.path.abspath(path)


def _assert_no_request_left(browser, page_url):
    """Nothing but the file itself was loaded: no resource timing entries, nothing requested
    from the page's document except the page, and no http/https/ws request from anywhere in the
    browser (its own start page loads chrome:// resources, which never leave the machine)."""
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    from_page, external = [], []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if message["params"].get("documentURL") == page_url:
                from_page.append(url)
            if not url.startswith(("file:", "chrome:", "data:", "about:")):
                external.append(url)
    assert from_page == [page_url], from_page
    assert not external, external
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # no script error, no refused request
