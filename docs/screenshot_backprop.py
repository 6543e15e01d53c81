"""Remake docs/backprop_html.png, the README's picture of `to_html` (needs chromium, chromedriver
and selenium, as tests/test_html_browser.py does):

    PYTHONPATH=. python docs/screenshot_backprop.py
"""

import pathlib
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "tests"))

from test_html_browser import path_url, start_browser, stop_browser  # noqa: E402

from autograd import Tensor  # noqa: E402
from autograd.debug import to_html  # noqa: E402

rng = np.random.default_rng(0)
x = Tensor(rng.normal(size=(3,)).round(2), name="x")
w = Tensor(rng.normal(size=(2, 3)).round(2), requires_grad=True, name="w")
b = Tensor(np.zeros(2), requires_grad=True, name="b")
h = (w @ x + b).tanh()
h.name = "h"
loss = (h * h).sum()
loss.name = "loss"

page = to_html(loss, pathlib.Path(tempfile.mkdtemp()) / "backprop.html",
               title="backprop: sum(tanh(w@x + b)^2)")
driver = start_browser(2000, 600)
try:
    driver.get(path_url(page))
    for _ in range(2):
        driver.find_element("id", "next").click()
    driver.save_screenshot(str(ROOT / "docs" / "backprop_html.png"))
finally:
    stop_browser(driver)
print("wrote docs/backprop_html.png")
