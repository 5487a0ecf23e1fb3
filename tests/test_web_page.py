"""The web page in a real headless browser (Chromium through Selenium) against the real server on the small run:
type a query, upload an image, move the MMR slider, filter by category, open "why this result"."""
from __future__ import annotations

import shutil

import pytest

from conftest import live_server
from gnn_mmsearch.search import Searcher
from gnn_mmsearch.serving import create_app

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="no chromium / chromedriver on PATH (apt-get install chromium chromium-driver)")
K = 20  # the page's default number of results


@pytest.fixture(scope="module")
def searcher(run_dir) -> Searcher:
    return Searcher.from_run(run_dir)


@pytest.fixture(scope="module")
def page(searcher, tmp_path_factory):
    """The page loaded in headless Chromium; yields (driver, wait)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    with live_server(create_app(searcher)) as base:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        try:
            driver.get(base + "/")
            yield driver, WebDriverWait(driver, 60, ignored_exceptions=[StaleElementReferenceException])
        finally:
            driver.quit()


def shown_ids(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)")


def shown_categories(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#results .card .cat')].map(c => c.textContent)")


def wait_for(wait, condition, what: str):
    try:
        return wait.until(lambda d: condition(d))
    except TimeoutException:
        pytest.fail(f"the page never showed {what}")


def status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def test_search_upload_slider_filter_and_why(page, searcher):
    driver, wait = page
    # the catalog's categories fill the select
    wait_for(wait, lambda d: len(Select(d.find_element(By.ID, "category")).options) > 1, "the category options")
    assert "200 products" in driver.find_element(By.ID, "run-info").text

    # a text query
    box = driver.find_element(By.ID, "query")
    box.send_keys("wireless mouse", Keys.ENTER)
    expected = [h.id for h in searcher.search(text="wireless mouse", k=K)]
    wait_for(wait, lambda d: shown_ids(d) == expected, "the text query's results")
    assert "results for “wireless mouse”" in status(driver)
    first = driver.find_element(By.CSS_SELECTOR, "#results .card")
    hit = searcher.search(text="wireless mouse", k=1)[0]
    assert hit.title in first.text and f"{hit.score:.3f}" in first.text
    if hit.price is not None:
        assert f"${hit.price:.2f}" in first.text
    images = driver.find_elements(By.CSS_SELECTOR, "#results .card img")
    assert images and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images[:3])

    # an uploaded image, combined with the text still in the box
    photo = next(searcher.catalog.image_file(p) for p in searcher.catalog.products if p.image_path)
    driver.find_element(By.ID, "image").send_keys(str(photo))
    expected = [h.id for h in searcher.search(text="wireless mouse", image=photo, k=K)]
    wait_for(wait, lambda d: shown_ids(d) == expected, "the text + image query's results")
    assert f"image {photo.name}" in status(driver)

    # the MMR slider re-issues the query
    requests = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-requests"))
    slider = driver.find_element(By.ID, "mmr")
    slider.send_keys(Keys.LEFT, Keys.LEFT, Keys.LEFT, Keys.LEFT)  # 1 -> 0.8
    wait_for(wait, lambda d: "MMR λ 0.80" in status(d), "the re-issued query's status")
    assert int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-requests")) > requests
    expected = [h.id for h in searcher.search(text="wireless mouse", image=photo, k=K, mmr_lambda=0.8)]
    wait_for(wait, lambda d: shown_ids(d) == expected, "the diversified results")

    # a category filter: every result in it
    category = searcher.catalog.products[searcher.catalog.index_of[expected[0]]].category[0]
    Select(driver.find_element(By.ID, "category")).select_by_value(category)
    wait_for(wait, lambda d: shown_categories(d) and all(c.startswith(category) for c in shown_categories(d)),
             "results in the chosen category")

    # why this result: modality shares and neighbours
    driver.find_element(By.CSS_SELECTOR, "#results .card").click()
    why = driver.find_element(By.ID, "why")
    wait_for(wait, lambda d: why.is_displayed() and "Which modality mattered" in why.text, "the why panel")
    rows = why.find_elements(By.CSS_SELECTOR, ".row")
    shares = [r.find_element(By.CLASS_NAME, "value").text for r in rows
              if r.find_element(By.CLASS_NAME, "name").text in searcher.encoder.config.modalities]
    assert len(shares) == len(searcher.encoder.config.modalities)
    assert abs(sum(int(s.rstrip("%")) for s in shares) - 100) <= len(shares)  # rounded percentages
    assert "Graph neighbours" in why.text and "Ranking stages" in why.text

    # an error is shown, not swallowed: a price bound no product meets is an empty list, not an error
    driver.find_element(By.ID, "price-max").send_keys("0", Keys.TAB)
    wait_for(wait, lambda d: "No results" in status(d), "the empty-result message")
    assert not driver.find_element(By.ID, "error").is_displayed()
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []  # no script or resource error
