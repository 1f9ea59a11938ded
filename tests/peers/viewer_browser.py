"""The trace viewer in a real browser, as a peer of the integration tests.

Usage: viewer_browser.py SCENARIO --url http://127.0.0.1:PORT --screenshots DIR [--expect JSON]

Drives the system's headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver; Selenium
Manager is never asked to download anything) against a running daemon and asserts on the DOM.
The Rust test sends the datagrams and says what to expect in --expect (a JSON object).

Scenarios:
  live      opens the list, waits for the empty state, prints READY (the caller then sends a
            trace), and waits for the row of expect["trace_id"] (else of the trace id the caller
            then writes to stdin) to appear without a reload.
  trace     first polls the API until expect["trace_id"] is known (so the page never meets a
            404, which Chromium logs as a console error), then opens #/trace/<id> and checks
            expect["rows"] ([{id, depth, name, bar}]), expect["orphans"] (ids), the Raw text of
            expect["raw_of"] against expect["raw"] (and expect["raw_label"] if given), and
            collapsing then expanding expect["collapse"].
  xss       opens the list; a row's name text must equal expect["name"] exactly, no alert may
            be open and no <img> may exist in the rows. With expect["trace_id"], the same on
            that trace's page.
  refused   opens the list; waits for a refused row showing expect["reason"] and
            expect["first_bytes"].
  host      no browser: GET /daemon/viewer/ with a foreign Host must be 403; with
            Host 127.0.0.1:PORT it must be 200 with a CSP of default-src 'self'.

After every browser scenario, any console entry of level WARNING or SEVERE fails it, and a
screenshot is saved as DIR/<scenario>.png. Prints what went wrong and exits 1 on failure;
prints OK as the last line and exits 0 on success; exits 2 when Chromium is missing.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20  # seconds, the longest any single wait may take


class Failure(Exception):
    """A failed expectation; its message says what was expected and what the page showed."""


# ---------------------------------------------------------------- browser plumbing


def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    opts.add_argument("--headless=new")
    opts.add_argument("--no-sandbox")
    opts.add_argument("--disable-gpu")
    opts.add_argument("--window-size=1400,1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager is then not consulted (nothing outside is
    # reachable anyway).
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def wait_for(driver, what, check, describe):
    """Polls `check()` until it returns something truthy; on timeout fails with `what` and
    `describe()` (what the page showed)."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(
            driver, WAIT, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        ).until(lambda _d: check())
    except TimeoutException:
        raise Failure(f"timed out after {WAIT} s waiting for {what}\n{describe()}") from None


def page_text(driver, element_id=None):
    """The visible text of the page (or of one element), for failure messages."""
    try:
        script = "const e = arguments[0] ? document.getElementById(arguments[0]) : document.body;" \
                 "return e ? e.innerText : '(no element #' + arguments[0] + ')';"
        return driver.execute_script(script, element_id)
    except Exception as err:  # the message must not hide the original failure
        return f"(could not read the page: {err})"


def open_page(driver, base, fragment=""):
    driver.get(base + "/daemon/viewer/" + fragment)


def trace_rows(driver):
    """The list's rows as [{trace_id, name, displayed}] (read in one go: no stale elements)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('tr.trace-row')).map(r => ({"
        "  trace_id: r.getAttribute('data-trace-id'),"
        "  name: (r.querySelector('.trace-name') || {}).textContent,"
        "  displayed: r.offsetParent !== null}));"
    )


def span_rows(driver):
    """The waterfall's rows as [{id, depth, name, classes, bar, orphan, displayed}] in order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#waterfall .span-row')).map(r => {"
        "  const bar = r.querySelector('.bar');"
        "  return {id: r.getAttribute('data-id'), depth: Number(r.getAttribute('data-depth')),"
        "    name: (r.querySelector('.span-name') || {}).textContent,"
        "    bar: bar ? Array.from(bar.classList).filter(c => c.startsWith('bar-')) : [],"
        "    orphan: r.classList.contains('orphan'),"
        "    note: (r.querySelector('.orphan-note') || {}).textContent || '',"
        "    displayed: r.offsetParent !== null};"
        "});"
    )


def find_by_attribute(driver, selector, attribute, value):
    """The element matching `selector` whose `attribute` equals `value` (compared here, so the
    value needs no CSS escaping)."""
    for element in driver.find_elements("css selector", selector):
        if element.get_attribute(attribute) == value:
            return element
    return None


def describe_rows(rows):
    return "\n".join(
        f"  {'  ' * r['depth']}{r['id']} depth={r['depth']} name={r['name']!r} bar={r['bar']}"
        + (" orphan" if r["orphan"] else "")
        + ("" if r["displayed"] else " (hidden)")
        for r in rows
    ) or "  (no rows)"


# ---------------------------------------------------------------- scenarios


def scenario_live(driver, base, expect):
    # Without expect["trace_id"], the caller writes it to stdin once it knows it (after READY:
    # a Flask app's SDK makes its own ids).
    trace_id = expect.get("trace_id")
    open_page(driver, base)
    wait_for(
        driver,
        "the empty state (#empty-state) to show",
        lambda: driver.find_element("id", "empty-state").is_displayed(),
        lambda: "The page showed:\n" + page_text(driver),
    )
    origin = driver.execute_script("return performance.timeOrigin;")
    print("READY", flush=True)
    ready = time.monotonic()
    if trace_id is None:
        trace_id = sys.stdin.readline().strip()
    wait_for(
        driver,
        f"a row with data-trace-id={trace_id!r} to appear in the list",
        lambda: any(r["trace_id"] == trace_id and r["displayed"] for r in trace_rows(driver)),
        lambda: f"The rows were: {trace_rows(driver)}\nThe page showed:\n" + page_text(driver),
    )
    if driver.execute_script("return performance.timeOrigin;") != origin:
        raise Failure("the row appeared, but the page had been reloaded")
    print(f"the row appeared {time.monotonic() - ready:.2f} s after READY")


def wait_api_knows(base, trace_id):
    """Polls the trace's API route until it answers 200 (at most WAIT seconds)."""
    url = base + "/daemon/viewer/api/traces/" + urllib.parse.quote(trace_id, safe="")
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as res:
                if res.status == 200:
                    return
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except OSError as err:
            last = str(err)
        time.sleep(0.1)
    raise Failure(f"the daemon never knew trace {trace_id} ({url}): last answer {last}")


def scenario_trace(driver, base, expect):
    trace_id = expect["trace_id"]
    wait_api_knows(base, trace_id)
    open_page(driver, base, "#/trace/" + urllib.parse.quote(trace_id, safe=""))

    # Rows: each expected one present with its depth, name and bar class. The page refetches
    # on every update, so this waits until the documents it needs have all arrived.
    expected_rows = expect.get("rows", [])
    expected_orphans = expect.get("orphans", [])
    mismatch = []

    def rows_match():
        listed = span_rows(driver)
        rows = {r["id"]: r for r in listed}
        mismatch.clear()
        if len(rows) != len(listed):
            ids = [r["id"] for r in listed]
            mismatch.append(f"some ids have more than one row: {sorted({i for i in ids if ids.count(i) > 1})}")
        for want in expected_rows:
            got = rows.get(want["id"])
            if got is None:
                mismatch.append(f"row {want['id']} is missing")
                continue
            if got["depth"] != want["depth"]:
                mismatch.append(f"row {want['id']}: depth {got['depth']}, expected {want['depth']}")
            if got["name"] != want["name"]:
                mismatch.append(f"row {want['id']}: name {got['name']!r}, expected {want['name']!r}")
            if "bar" in want and got["bar"] != [want["bar"]]:
                mismatch.append(f"row {want['id']}: bar {got['bar']}, expected {want['bar']}")
        for oid in expected_orphans:
            got = rows.get(oid)
            if got is None or not got["orphan"]:
                mismatch.append(f"row {oid} should be marked as an orphan (class orphan)")
            elif "not received" not in got["note"]:
                mismatch.append(f"row {oid} should say 'parent ... not received', says {got['note']!r}")
        return not mismatch and bool(rows)

    wait_for(
        driver,
        "the waterfall's rows to match",
        rows_match,
        lambda: "Mismatches:\n  " + "\n  ".join(mismatch)
        + "\nThe waterfall showed:\n" + describe_rows(span_rows(driver))
        + "\nThe page showed:\n" + page_text(driver, "trace-view"),
    )

    if "raw_of" in expect:
        check_raw(driver, expect)
    if "collapse" in expect:
        check_collapse(driver, expect["collapse"])


def check_raw(driver, expect):
    node_id = expect["raw_of"]
    row = find_by_attribute(driver, "#waterfall .span-row", "data-id", node_id)
    if row is None:
        raise Failure(f"no row {node_id} to click for its raw document\n" + describe_rows(span_rows(driver)))
    row.click()
    tab = wait_for(
        driver,
        "the details panel's Raw tab (#tab-raw)",
        lambda: next(iter(driver.find_elements("id", "tab-raw")), None),
        lambda: "The details panel showed:\n" + page_text(driver, "details"),
    )
    tab.click()
    raw = wait_for(
        driver,
        "the raw text (#raw) to show",
        lambda: next((e for e in driver.find_elements("id", "raw") if e.is_displayed()), None),
        lambda: "The details panel showed:\n" + page_text(driver, "details"),
    )
    # textContent, not .text: WebDriver's visible text trims and normalises whitespace.
    got = raw.get_property("textContent")
    if got != expect["raw"]:
        raise Failure(f"the raw text of {node_id} differs\nexpected: {expect['raw']!r}\nshown:    {got!r}")
    if "raw_label" in expect:
        label = driver.find_element("id", "raw-label").get_property("textContent")
        if label != expect["raw_label"]:
            raise Failure(f"the raw label of {node_id} is {label!r}, expected {expect['raw_label']!r}")
    # Copy must not fail loudly whether or not the clipboard is available (console checked later).
    driver.find_element("id", "copy-raw").click()


def check_collapse(driver, node_id):
    rows = span_rows(driver)
    index = next((i for i, r in enumerate(rows) if r["id"] == node_id), None)
    if index is None:
        raise Failure(f"no row {node_id} to collapse\n" + describe_rows(rows))
    depth = rows[index]["depth"]
    below = []
    for r in rows[index + 1:]:
        if r["depth"] <= depth:
            break
        below.append(r["id"])
    if not below:
        raise Failure(f"row {node_id} has nothing under it to collapse\n" + describe_rows(rows))
    row = find_by_attribute(driver, "#waterfall .span-row", "data-id", node_id)
    toggles = row.find_elements("css selector", ".toggle")
    if not toggles:
        raise Failure(f"row {node_id} has children but no .toggle")

    def shown():
        return {r["id"]: r["displayed"] for r in span_rows(driver)}

    toggles[0].click()
    wait_for(
        driver,
        f"the rows under {node_id} ({below}) to hide after clicking its toggle",
        lambda: not any(shown().get(i, False) for i in below) and shown().get(node_id),
        lambda: describe_rows(span_rows(driver)),
    )
    row = find_by_attribute(driver, "#waterfall .span-row", "data-id", node_id)
    row.find_element("css selector", ".toggle").click()
    wait_for(
        driver,
        f"the rows under {node_id} ({below}) to show again after a second click",
        lambda: all(shown().get(i, False) for i in below),
        lambda: describe_rows(span_rows(driver)),
    )


def assert_no_alert(driver, where):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    raise Failure(f"an alert opened on {where}: {text!r} (a document's text ran as HTML)")


def scenario_xss(driver, base, expect):
    name = expect["name"]
    open_page(driver, base)
    wait_for(
        driver,
        f"a row whose name text is exactly {name!r}",
        lambda: any(r["name"] == name for r in trace_rows(driver)),
        lambda: f"The rows were: {trace_rows(driver)}\nThe page showed:\n" + page_text(driver),
    )
    time.sleep(0.3)  # give an injected onerror handler its chance to fire
    assert_no_alert(driver, "the list")
    images = driver.find_elements("css selector", "#trace-rows img")
    if images:
        raise Failure(f"{len(images)} <img> elements exist inside the list's rows")

    if "trace_id" in expect:
        trace_id = expect["trace_id"]
        wait_api_knows(base, trace_id)
        open_page(driver, base, "#/trace/" + urllib.parse.quote(trace_id, safe=""))
        wait_for(
            driver,
            f"a waterfall row named exactly {name!r}",
            lambda: any(r["name"] == name for r in span_rows(driver)),
            lambda: describe_rows(span_rows(driver)),
        )
        first = driver.find_element("css selector", "#waterfall .span-row")
        first.click()
        time.sleep(0.3)
        assert_no_alert(driver, "the trace page")
        images = driver.find_elements("css selector", "#trace-view img")
        if images:
            raise Failure(f"{len(images)} <img> elements exist on the trace page")


def scenario_refused(driver, base, expect):
    reason = expect["reason"]
    first_bytes = expect["first_bytes"]
    open_page(driver, base)

    def found():
        for text in driver.execute_script(
            "return Array.from(document.querySelectorAll('.refused-row')).map(r => r.textContent);"
        ):
            if reason in text and first_bytes in text:
                return True
        return False

    wait_for(
        driver,
        f"a refused datagram row with reason {reason!r} and first bytes {first_bytes!r}",
        found,
        lambda: "The refused section showed:\n" + page_text(driver, "refused"),
    )


def scenario_host(base):
    parsed = urllib.parse.urlsplit(base)
    port = parsed.port
    url = base + "/daemon/viewer/"

    def get(host):
        request = urllib.request.Request(url, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as res:
                return res.status, res.headers
        except urllib.error.HTTPError as err:
            return err.code, err.headers

    status, _ = get(f"evil.example:{port}")
    if status != 403:
        raise Failure(f"GET {url} with Host: evil.example:{port} answered {status}, expected 403")
    status, headers = get(f"127.0.0.1:{port}")
    if status != 200:
        raise Failure(f"GET {url} with Host: 127.0.0.1:{port} answered {status}, expected 200")
    csp = headers.get("Content-Security-Policy", "")
    if "default-src 'self'" not in csp:
        raise Failure(f"GET {url}: Content-Security-Policy is {csp!r}, expected it to contain default-src 'self'")


BROWSER_SCENARIOS = {
    "live": scenario_live,
    "trace": scenario_trace,
    "xss": scenario_xss,
    "refused": scenario_refused,
}


# ---------------------------------------------------------------- main


def console_problems(driver):
    """Console entries of level WARNING or SEVERE since the page opened."""
    return [e for e in driver.get_log("browser") if e.get("level") in ("WARNING", "SEVERE")]


def run_browser(name, base, screenshots, expect):
    try:
        driver = make_driver()
    except Exception as err:
        return f"could not start Chromium through {CHROMEDRIVER}: {type(err).__name__}: {err}"
    failure = None
    try:
        BROWSER_SCENARIOS[name](driver, base, expect)
    except Failure as err:
        failure = str(err)
    except Exception as err:  # a Selenium error is a failure too, with its type
        failure = f"{type(err).__name__}: {err}\nThe page showed:\n{page_text(driver)}"
    try:
        problems = console_problems(driver)
        if problems:
            lines = "\n".join(f"  {e.get('level')} {e.get('source', '')}: {e.get('message')}" for e in problems)
            failure = (failure + "\n" if failure else "") + f"the browser's console has warnings or errors:\n{lines}"
        os.makedirs(screenshots, exist_ok=True)
        path = os.path.join(screenshots, f"{name}.png")
        if not driver.save_screenshot(path):
            print(f"(could not save the screenshot {path})")
    finally:
        driver.quit()
    return failure


def main():
    parser = argparse.ArgumentParser(description="The trace viewer in headless Chromium.")
    parser.add_argument("scenario", choices=sorted(list(BROWSER_SCENARIOS) + ["host"]))
    parser.add_argument("--url", required=True, help="the daemon's HTTP base, e.g. http://127.0.0.1:2000")
    parser.add_argument("--screenshots", required=True, help="directory for <scenario>.png")
    parser.add_argument("--expect", default="{}", help="what to expect, a JSON object")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    try:
        expect = json.loads(args.expect)
    except ValueError as err:
        print(f"--expect is not JSON: {err}")
        return 2

    if args.scenario == "host":
        failure = None
        try:
            scenario_host(base)
        except Failure as err:
            failure = str(err)
    else:
        if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
            print(
                "chromium and chromium-driver are missing: run `apt-get install -y chromium "
                "chromium-driver` (scripts/test.sh does this when run as root)"
            )
            return 2
        try:
            failure = run_browser(args.scenario, base, args.screenshots, expect)
        except KeyError as err:
            failure = f"--expect lacks the key {err}"

    if failure:
        print(f"FAILED {args.scenario}: {failure}", flush=True)
        return 1
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
