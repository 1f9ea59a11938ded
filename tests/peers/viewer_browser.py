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

Part 2, the tools on the pages:
  waterfall opens expect["trace_id"] as `trace` does (expect["rows"]); checks the rows marked
            as on the critical path (expect["critical"], expect["not_critical"]) and its legend
            entry; the error count and stepping through expect["errors"] (ids in display
            order; the second starts below the fold) with the buttons and e/E, going round at
            the ends and into a collapsed parent; the keys j/k, h/l and 1-9/0; with
            expect["hints"] ([{id, rule}]) and expect["trace_hints"] (rules) the API's hints,
            exactly those, beside their rows, in the details and in the header; with
            expect["download"] (the documents sent) the download link, fetched from the page
            and clicked (the file saved under the server's name, trace-<id>.jsonl); with
            expect["more_critical"] ([{trace_id, rows, critical, not_critical}]) the critical
            path of more traces.
  keys      the list (at least two rows): ? opens and closes the keys' legend; / focuses the
            filter box, where j is text (and, once typing pauses, the filter: #/?q=j);
            Backspace takes it off again; Escape leaves the box; j/k select rows; Enter opens the
            selected trace; / on a trace's page goes back to the filter box.
  filter    types expect["q"], ticks errors only, types expect["min_ms"] and
            expect["annotation"]; then only expect["matching"] is listed and the fragment is
            expect["hash"], also after a reload; prints READY, then the caller sends
            expect["late_other"] (not matching) and expect["late_match"]: only the latter
            joins; Clear filter lists everything again.
  pause     Pause live, READY, the caller sends expect["trace_id"]: counted ("1 update while
            paused"), not listed; Resume live lists it.
  load      expect["drop"] and expect["pick"] ({path, kept, skipped, trace_id, rows}): a JSON
            Lines file dropped on the page (a DragEvent with the File), then one given to the
            file input: "Loaded N documents (M skipped)", its trace listed, opened, its rows.
            With expect["too_large"] ({path, budget_mib}), a file larger than the store given
            to the file input: the page says so ("… is larger than the viewer's store (N MiB)
            …") and sends nothing.
  clear     Clear all… asks first (Cancel keeps everything); Yes empties the list and the store.

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
    """The waterfall's rows as [{id, depth, name, bar, orphan, note, critical, selected, hint,
    displayed, in_view}] in order (hint: the title of the row's hint badge, or None)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#waterfall .span-row')).map(r => {"
        "  const bar = r.querySelector('.bar');"
        "  const badge = r.querySelector('.hint-badge');"
        "  const box = r.getBoundingClientRect();"
        "  return {id: r.getAttribute('data-id'), depth: Number(r.getAttribute('data-depth')),"
        "    name: (r.querySelector('.span-name') || {}).textContent,"
        "    bar: bar ? Array.from(bar.classList).filter(c => c.startsWith('bar-')) : [],"
        "    orphan: r.classList.contains('orphan'),"
        "    note: (r.querySelector('.orphan-note') || {}).textContent || '',"
        "    critical: r.classList.contains('critical'),"
        "    selected: r.classList.contains('selected'),"
        "    hint: badge ? badge.getAttribute('title') : null,"
        "    displayed: r.offsetParent !== null,"
        "    in_view: r.offsetParent !== null && box.top >= -2"
        "      && box.bottom <= document.documentElement.clientHeight + 2};"
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
        + (" critical" if r.get("critical") else "")
        + (" selected" if r.get("selected") else "")
        + (f" hint={r['hint']!r}" if r.get("hint") else "")
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


def open_trace(driver, base, expect):
    """Opens expect["trace_id"]'s page once the API knows it, and waits for its rows."""
    trace_id = expect["trace_id"]
    wait_api_knows(base, trace_id)
    open_page(driver, base, "#/trace/" + urllib.parse.quote(trace_id, safe=""))
    wait_rows(driver, expect)


def wait_rows(driver, expect):
    """Waits for the waterfall to show expect["rows"] ([{id, depth, name, bar}]) and
    expect["orphans"] (ids)."""
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


def scenario_trace(driver, base, expect):
    open_trace(driver, base, expect)
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


# ---------------------------------------------------------------- part 2: tools on the pages


def press(driver, keys):
    """Sends `keys` to whatever has the focus (the page itself when nothing has)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def api_json(base, path):
    with urllib.request.urlopen(base + "/daemon/viewer/api/" + path, timeout=10) as res:
        return json.loads(res.read())


def selected_id(driver):
    return next((r["id"] for r in span_rows(driver) if r["selected"]), None)


def wait_selected(driver, node_id, after):
    """Waits for `node_id`'s row to be the selected one, shown, in view, with its details."""

    def ok():
        row = next((r for r in span_rows(driver) if r["id"] == node_id), None)
        details = driver.execute_script(
            "const e = document.querySelector('#details .details-id'); return e ? e.textContent : null;"
        )
        return row is not None and row["selected"] and row["in_view"] and details == node_id

    wait_for(
        driver,
        f"row {node_id} to be selected, in view and in the details panel after {after}",
        ok,
        lambda: describe_rows(span_rows(driver)) + "\nThe details panel showed:\n" + page_text(driver, "details"),
    )


def wait_shown(driver, want, after):
    """Waits until exactly the rows whose ids `want(row)` accepts are displayed."""

    def wrong():
        return [r["id"] for r in span_rows(driver) if r["displayed"] != want(r)]

    wait_for(
        driver,
        f"the right rows to show after {after} (wrong: {wrong()})",
        lambda: not wrong(),
        lambda: describe_rows(span_rows(driver)),
    )


def check_critical(driver, expect):
    legend = driver.execute_script("const e = document.querySelector('.legend'); return e ? e.textContent : '';")
    if "critical path" not in legend:
        raise Failure(f"the waterfall's legend has no 'critical path' entry: {legend!r}")
    rows = {r["id"]: r for r in span_rows(driver)}
    wrong = [f"{i} ({rows[i]['name']}) should be on the path" for i in expect["critical"] if not rows[i]["critical"]]
    wrong += [f"{i} ({rows[i]['name']}) should not be on it" for i in expect["not_critical"] if rows[i]["critical"]]
    if wrong:
        listed = describe_rows(span_rows(driver))
        raise Failure("critical path (class critical):\n  " + "\n  ".join(wrong) + "\n" + listed)


def check_errors(driver, errors):
    """`errors`: the ids of the error, fault and throttle nodes, in display order; the second
    must start below the fold (so that stepping to it has to scroll)."""
    count = driver.find_element("id", "error-count").text
    if not count.startswith(f"{len(errors)} spans with an error"):
        raise Failure(f"#error-count says {count!r}, expected {len(errors)} spans with an error, fault or throttle")
    below = next(r for r in span_rows(driver) if r["id"] == errors[1])
    if below["in_view"]:
        listed = describe_rows(span_rows(driver))
        raise Failure(f"the test needs error row {errors[1]} below the fold at first\n" + listed)

    driver.find_element("id", "next-error").click()
    wait_selected(driver, errors[0], "clicking next error")
    press(driver, "e")
    wait_selected(driver, errors[1], "e")
    position = driver.find_element("id", "error-position").text
    if position != f"2 of {len(errors)}":
        raise Failure(f"#error-position says {position!r}, expected '2 of {len(errors)}'")
    press(driver, "E")
    wait_selected(driver, errors[0], "E (shift+e)")
    press(driver, "E")
    wait_selected(driver, errors[-1], "E on the first error (goes round to the last)")
    driver.find_element("id", "prev-error").click()
    wait_selected(driver, errors[-2], "clicking previous error")
    press(driver, "e")
    press(driver, "e")
    wait_selected(driver, errors[0], "e on the last error (goes round to the first)")
    # An error inside a collapsed row is shown when stepped to.
    press(driver, "1")
    wait_shown(driver, lambda r: r["depth"] == 0, "1 (only the roots)")
    press(driver, "e")
    wait_selected(driver, errors[0], "e with its parent collapsed")


def check_waterfall_keys(driver):
    press(driver, "0")
    wait_shown(driver, lambda r: True, "0 (expand all)")
    rows = span_rows(driver)
    at = next(i for i, r in enumerate(rows) if r["selected"])
    press(driver, "j")
    wait_selected(driver, rows[at + 1]["id"], "j")
    press(driver, "k")
    wait_selected(driver, rows[at]["id"], "k")

    # h and l on the first root: its subtree hides and shows; l again goes to its first child.
    root = rows[0]
    find_by_attribute(driver, "#waterfall .span-row", "data-id", root["id"]).click()
    wait_selected(driver, root["id"], "a click")
    end = next((i for i, r in enumerate(rows[1:], 1) if r["depth"] == 0), len(rows))
    subtree = {r["id"] for r in rows[1:end]}
    press(driver, "h")
    wait_shown(driver, lambda r: r["id"] not in subtree, "h on the root")
    press(driver, "l")
    wait_shown(driver, lambda r: True, "l on the root")
    press(driver, "l")
    child = rows[1]
    wait_selected(driver, child["id"], "l on an expanded row (its first child)")
    end = next((i for i, r in enumerate(rows[2:], 2) if r["depth"] <= child["depth"]), len(rows))
    under = {r["id"] for r in rows[2:end]}
    if not under:
        raise Failure(f"the test needs {child['id']} to have rows under it\n" + describe_rows(rows))
    press(driver, "h")
    wait_shown(driver, lambda r: r["id"] not in under, f"h on {child['id']}")
    press(driver, "h")
    wait_selected(driver, root["id"], "h on a collapsed row (its parent)")

    # Digits: the depth shown.
    press(driver, "2")
    wait_shown(driver, lambda r: r["depth"] <= 1, "2 (two levels)")
    press(driver, "3")
    wait_shown(driver, lambda r: r["depth"] <= 2, "3 (three levels)")
    press(driver, "0")
    wait_shown(driver, lambda r: True, "0 (expand all)")


def check_hints(driver, base, expect):
    """expect["hints"]: [{id, rule}] beside rows; expect["trace_hints"]: rules in the header.
    Their messages are the API's; no other hint may be given."""
    trace_id = expect["trace_id"]
    answer = api_json(base, "traces/" + urllib.parse.quote(trace_id, safe=""))
    given = answer.get("hints")
    if not isinstance(given, list):
        raise Failure(f"the trace's answer has no hints list: {sorted(answer)}")
    want = {(h["id"], h["rule"]) for h in expect["hints"]} | {(None, rule) for rule in expect["trace_hints"]}
    got = {(h.get("id"), h.get("rule")) for h in given}
    if got != want:
        raise Failure(f"the API's hints are {sorted(got, key=str)}, expected {sorted(want, key=str)}\n{given}")
    message = {(h.get("id"), h.get("rule")): h.get("message") or "" for h in given}

    rows = {r["id"]: r for r in span_rows(driver)}
    with_badge = {i for i, r in rows.items() if r["hint"] is not None}
    badged = {h["id"] for h in expect["hints"]}
    if with_badge != badged:
        raise Failure(f"rows with a hint badge: {sorted(with_badge)}, expected {sorted(badged)}")
    for h in expect["hints"]:
        text = message[(h["id"], h["rule"])]
        if not text or text not in rows[h["id"]]["hint"]:
            title = rows[h["id"]]["hint"]
            raise Failure(f"row {h['id']}'s hint badge title is {title!r}, expected it to hold {text!r}")
        find_by_attribute(driver, "#waterfall .span-row", "data-id", h["id"]).click()
        wait_for(
            driver,
            f"the details of {h['id']} to list its hint {h['rule']} with the message {text!r}",
            lambda: any(
                text in item.text
                for item in driver.find_elements("css selector", "#details-hints .hint-item")
                if item.get_attribute("data-rule") == h["rule"]
            ),
            lambda: "The details panel showed:\n" + page_text(driver, "details"),
        )
    for rule in expect["trace_hints"]:
        items = [
            i.text
            for i in driver.find_elements("css selector", "#trace-hints .hint-item")
            if i.get_attribute("data-rule") == rule
        ]
        if not any(message[(None, rule)] in t for t in items):
            raise Failure(
                f"the trace's header lacks the hint {rule} ({message[(None, rule)]!r})\nThe header showed:\n"
                + page_text(driver, "trace-header")
            )


def check_download(driver, expect, downloads):
    """The trace page's download link: right URL, an empty download attribute (the name is the
    server's), and the documents sent, one per line, both fetched from the page and saved by a
    click as the server's Content-Disposition names the file (into `downloads`)."""
    link = driver.find_element("id", "download")
    href = link.get_attribute("href") or ""
    path = "/daemon/viewer/api/traces/" + urllib.parse.quote(expect["trace_id"], safe="") + "/download"
    if not href.endswith(path):
        raise Failure(f"the download link points at {href!r}, expected …{path}")
    attribute = driver.execute_script(
        "return arguments[0].hasAttribute('download') ? arguments[0].getAttribute('download') : null;", link
    )
    if attribute != "":
        raise Failure(f"the download link's download attribute is {attribute!r}, expected present and empty")
    got = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(async r => done({status: r.status, type: r.headers.get('content-type'),"
        "  disposition: r.headers.get('content-disposition'), text: await r.text()}),"
        "  e => done({error: String(e)}));",
        href,
    )
    if got.get("error") or got.get("status") != 200:
        raise Failure(f"fetching {href} from the page: {got}")
    if not (got.get("type") or "").startswith("application/x-ndjson"):
        raise Failure(f"{href} answered Content-Type {got.get('type')!r}, expected application/x-ndjson")
    if "attachment" not in (got.get("disposition") or ""):
        raise Failure(f"{href} answered Content-Disposition {got.get('disposition')!r}, expected an attachment")
    check_lines(href, got["text"], expect["download"])

    # A click saves the file under the server's name (Chromium would name it after the URL,
    # `download`, if it ignored the header).
    name = "trace-" + "".join(c for c in expect["trace_id"] if c.isascii() and (c.isalnum() or c in "-_")) + ".jsonl"
    link.click()
    saved = os.path.join(downloads, name)
    wait_for(
        driver,
        f"the click on the download link to save {saved}",
        lambda: os.path.isfile(saved) and not any(f.endswith(".crdownload") for f in os.listdir(downloads)),
        lambda: f"{downloads} holds {sorted(os.listdir(downloads))}",
    )
    others = sorted(f for f in os.listdir(downloads) if f != name)
    if others:
        raise Failure(f"the click saved other files than {name}: {others}")
    with open(saved, encoding="utf-8") as f:
        check_lines(saved, f.read(), expect["download"])


def check_lines(where, text, documents):
    """`text` holds `documents`, one per line (in any order)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if sorted(lines) != sorted(documents):
        raise Failure(
            f"{where} gave {len(lines)} lines, expected the {len(documents)} documents sent\n"
            f"got:      {lines!r}\nexpected: {documents!r}"
        )


def scenario_waterfall(driver, base, expect):
    open_trace(driver, base, expect)
    check_critical(driver, expect)
    check_errors(driver, expect["errors"])
    check_waterfall_keys(driver)
    if "hints" in expect:
        check_hints(driver, base, expect)
    if "download" in expect:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="viewer-downloads-") as downloads:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
            check_download(driver, expect, downloads)
    # More traces whose critical path to check ({trace_id, rows, critical, not_critical}).
    for more in expect.get("more_critical", []):
        open_trace(driver, base, more)
        check_critical(driver, more)


def list_state(driver):
    """The list's rows, which one is selected, the focused element's id and the hash."""
    return driver.execute_script(
        "return {rows: Array.from(document.querySelectorAll('tr.trace-row')).filter(r => r.offsetParent !== null)"
        "    .map(r => r.getAttribute('data-trace-id')),"
        "  selected: Array.from(document.querySelectorAll('tr.trace-row.selected'))"
        "    .map(r => r.getAttribute('data-trace-id')),"
        "  focus: document.activeElement ? document.activeElement.id : null,"
        "  hash: location.hash};"
    )


def wait_list(driver, what, check):
    return wait_for(
        driver,
        what,
        lambda: check(list_state(driver)),
        lambda: f"The list was: {list_state(driver)}\nThe page showed:\n" + page_text(driver),
    )


def scenario_keys(driver, base, expect):
    open_page(driver, base)
    wait_list(driver, "at least two rows in the list", lambda s: len(s["rows"]) >= 2)

    press(driver, "?")
    wait_for(
        driver,
        "? to open the keys' legend (#keys) listing next error",
        lambda: driver.execute_script("return document.getElementById('keys').open;")
        and "next" in page_text(driver, "keys") and "error" in page_text(driver, "keys"),
        lambda: page_text(driver, "keys"),
    )
    press(driver, "?")
    wait_for(
        driver,
        "? again to close the legend",
        lambda: not driver.execute_script("return document.getElementById('keys').open;"),
        lambda: page_text(driver, "keys"),
    )

    # Keys typed into the filter box are text, not commands.
    press(driver, "/")
    wait_list(driver, "/ to focus the filter box (#filter-q)", lambda s: s["focus"] == "filter-q")
    press(driver, "j")
    value = driver.find_element("id", "filter-q").get_property("value")
    selected = list_state(driver)["selected"]
    if value != "j" or selected:
        raise Failure(f"j typed in the filter box: its value is {value!r} and the list selection {selected}")
    from selenium.webdriver.common.keys import Keys

    # The filter applies once typing pauses: wait for it, so that taking it off is seen.
    wait_list(driver, "the typed j to become the filter (#/?q=j)", lambda s: s["hash"] == "#/?q=j")
    press(driver, Keys.BACKSPACE)
    press(driver, Keys.ESCAPE)
    wait_list(
        driver,
        "Escape to leave the box, and the emptied box to take the filter off (q=j gone)",
        lambda s: s["focus"] != "filter-q" and s["hash"] in ("", "#/"),
    )
    wait_list(driver, "every row back", lambda s: len(s["rows"]) >= 2)

    rows = list_state(driver)["rows"]
    press(driver, "j")
    wait_list(driver, f"j to select the first row {rows[0]}", lambda s: s["selected"] == [rows[0]])
    press(driver, "j")
    wait_list(driver, f"j to select the second row {rows[1]}", lambda s: s["selected"] == [rows[1]])
    press(driver, "k")
    wait_list(driver, f"k to select the first row {rows[0]} again", lambda s: s["selected"] == [rows[0]])
    press(driver, Keys.ENTER)
    fragment = "#/trace/" + urllib.parse.quote(rows[0], safe="")
    wait_for(
        driver,
        f"Enter to open {fragment} and its waterfall",
        lambda: driver.execute_script("return location.hash;") == fragment and span_rows(driver),
        lambda: page_text(driver),
    )
    press(driver, "/")
    wait_list(
        driver,
        "/ on a trace's page to open the list with the filter box focused",
        lambda s: s["focus"] == "filter-q" and s["rows"],
    )


def scenario_filter(driver, base, expect):
    """expect: all (ids listed at first), q, errors, min_ms, annotation (typed in), hash (the
    URL's fragment then), matching (the ids listed then); after READY the caller sends
    late_other (not matching) then late_match."""
    open_page(driver, base)
    everything = set(expect["all"])
    wait_list(driver, f"the rows {sorted(everything)}", lambda s: everything <= set(s["rows"]))

    driver.find_element("id", "filter-q").send_keys(expect["q"])
    driver.find_element("id", "filter-errors").click()
    driver.find_element("id", "filter-min-ms").send_keys(expect["min_ms"])
    driver.find_element("id", "filter-annotation").send_keys(expect["annotation"])
    matching = set(expect["matching"])
    wait_list(
        driver,
        f"only {sorted(matching)} listed, the fragment {expect['hash']}",
        lambda s: set(s["rows"]) == matching and s["hash"] == expect["hash"],
    )
    count = driver.find_element("id", "trace-count").text
    if count != f"({len(matching)} matching)":
        raise Failure(f"#trace-count says {count!r}, expected ({len(matching)} matching)")

    # The filter is in the URL: a reload keeps it.
    driver.refresh()
    wait_list(
        driver,
        f"after a reload, still only {sorted(matching)}",
        lambda s: set(s["rows"]) == matching and s["hash"] == expect["hash"],
    )
    boxes = driver.execute_script(
        "const box = (id) => document.getElementById(id);"
        "return {q: box('filter-q').value, errors: box('filter-errors').checked,"
        "  min_ms: box('filter-min-ms').value, annotation: box('filter-annotation').value};"
    )
    want = {"q": expect["q"], "errors": True, "min_ms": expect["min_ms"], "annotation": expect["annotation"]}
    if boxes != want:
        raise Failure(f"after a reload the filter's boxes hold {boxes}, expected {want}")

    # Live under a filter: the server says what matches; a trace that does not is never listed
    # (not even until the page's next full refetch).
    print("READY", flush=True)
    matching.add(expect["late_match"])

    def only_the_match(s):
        if expect["late_other"] in s["rows"]:
            raise Failure(f"the live trace {expect['late_other']}, which does not match, was listed: {s}")
        return set(s["rows"]) == matching

    wait_list(driver, f"the live trace {expect['late_match']} to join", only_the_match)
    wait_api_knows(base, expect["late_other"])
    deadline = time.monotonic() + 2  # and a while after both arrived
    while time.monotonic() < deadline:
        only_the_match(list_state(driver))
        time.sleep(0.1)

    driver.find_element("id", "filter-clear").click()
    everything |= {expect["late_match"], expect["late_other"]}
    wait_list(
        driver,
        "Clear filter to list everything, the fragment #/",
        lambda s: everything <= set(s["rows"]) and s["hash"] == "#/",
    )


def scenario_pause(driver, base, expect):
    """After READY the caller sends expect["trace_id"]; it is listed only after resuming."""
    import re

    open_page(driver, base)
    wait_list(driver, f"the row {expect['before']}", lambda s: expect["before"] in s["rows"])
    button = driver.find_element("id", "pause-live")
    button.click()
    note = driver.find_element("id", "paused-note")
    if button.text != "Resume live" or note.text != "0 updates while paused":
        raise Failure(f"after Pause live the button says {button.text!r} and the note {note.text!r}")
    print("READY", flush=True)
    wait_for(
        driver,
        "the note to count the update held back (N updates while paused)",
        lambda: re.fullmatch(r"[1-9]\d* updates? while paused", note.text),
        lambda: f"The note said {note.text!r}",
    )
    wait_api_knows(base, expect["trace_id"])
    if expect["trace_id"] in list_state(driver)["rows"]:
        raise Failure(f"{expect['trace_id']} was listed while paused")
    button.click()
    wait_list(driver, f"after Resume live, the row {expect['trace_id']}", lambda s: expect["trace_id"] in s["rows"])
    if note.is_displayed() or button.text != "Pause live":
        raise Failure(f"after resuming the note shows ({note.text!r}) or the button says {button.text!r}")


# A drop as the browser makes it, from a file's text: dragover (which must show the drop
# overlay), then drop, both with a DataTransfer holding the File.
DROP_JS = """
const [text, name] = arguments;
const data = new DataTransfer();
data.items.add(new File([text], name, {type: 'application/x-ndjson'}));
const over = new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true});
document.body.dispatchEvent(over);
const overlay = document.getElementById('drop-overlay');
const shown = overlay.offsetParent !== null || getComputedStyle(overlay).display !== 'none';
document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
return {accepted: over.defaultPrevented, shown: shown, hidden_after: overlay.hidden};
"""


def loaded(driver, base, file, how):
    """Waits for "Loaded N documents (M skipped)", then for the file's trace in the list, and
    opens it."""
    text = f"Loaded {file['kept']} document{'' if file['kept'] == 1 else 's'} ({file['skipped']} skipped)"
    wait_for(
        driver,
        f"{text!r} after {how}",
        lambda: text in driver.find_element("id", "notice").text,
        lambda: "The notice said: " + page_text(driver, "notice"),
    )
    wait_list(driver, f"the loaded trace {file['trace_id']} in the list", lambda s: file["trace_id"] in s["rows"])
    open_row(driver, file["trace_id"])
    wait_rows(driver, file)


def open_row(driver, trace_id):
    """Clicks the list row's name (again if live updates redraw the list meanwhile)."""

    def click():
        row = find_by_attribute(driver, "tr.trace-row", "data-trace-id", trace_id)
        if row is None:
            return False
        row.find_element("css selector", ".trace-name").click()
        return True

    wait_for(driver, f"a row {trace_id} to click", click, lambda: f"The list was: {list_state(driver)}")


def scenario_load(driver, base, expect):
    """expect["drop"] and expect["pick"]: {path, kept, skipped, trace_id, rows}, a JSON Lines
    file dropped on the page and one picked through the file input."""
    open_page(driver, base)
    wait_for(
        driver, "the list", lambda: driver.find_element("id", "list-view").is_displayed(), lambda: page_text(driver)
    )
    drop = expect["drop"]
    with open(drop["path"], encoding="utf-8") as f:
        text = f.read()
    result = driver.execute_script(DROP_JS, text, os.path.basename(drop["path"]))
    if not (result["accepted"] and result["shown"] and result["hidden_after"]):
        raise Failure(f"dragover must be accepted and show #drop-overlay, drop hide it: {result}")
    loaded(driver, base, drop, "a drop")

    driver.find_element("id", "back").click()
    pick = expect["pick"]
    driver.find_element("id", "file-input").send_keys(pick["path"])
    loaded(driver, base, pick, "picking the file")

    if "too_large" in expect:
        check_too_large(driver, base, expect["too_large"])


def check_too_large(driver, base, too_large):
    """too_large: {path, budget_mib}, a file larger than the store: the page says so and does
    not send it (the server would answer 413, which the console would show)."""
    driver.find_element("id", "back").click()
    wait_for(
        driver,
        "the store's figures (#store-stats), which give its budget",
        lambda: driver.find_element("id", "list-view").is_displayed()
        and "of" in driver.find_element("id", "store-stats").text,
        lambda: page_text(driver),
    )
    before = api_json(base, "traces")["store"]["documents"]
    driver.find_element("id", "file-input").send_keys(too_large["path"])
    name = os.path.basename(too_large["path"])
    text = (
        f"{name} is larger than the viewer's store ({too_large['budget_mib']} MiB): "
        "start the daemon with a larger --viewer-memory"
    )
    wait_for(
        driver,
        f"the notice {text!r}",
        lambda: text in driver.find_element("id", "notice").text
        and "notice-error" in (driver.find_element("id", "notice").get_attribute("class") or ""),
        lambda: "The notice said: " + page_text(driver, "notice"),
    )
    after = api_json(base, "traces")["store"]["documents"]
    if after != before:
        raise Failure(f"the store went from {before} to {after} documents: the file was sent")


def scenario_clear(driver, base, expect):
    import re

    open_page(driver, base)
    wait_list(driver, "some rows", lambda s: s["rows"])
    driver.find_element("id", "clear-all").click()
    confirm = driver.find_element("id", "clear-confirm")
    if not confirm.is_displayed() or "Clear all traces?" not in confirm.text:
        raise Failure(f"Clear all… must ask first (#clear-confirm): {confirm.text!r}")
    driver.find_element("id", "clear-no").click()
    if confirm.is_displayed() or not driver.find_element("id", "clear-all").is_displayed():
        raise Failure("Cancel must put Clear all… back")
    if not api_json(base, "traces")["traces"]:
        raise Failure("the store was cleared without a Yes")
    driver.find_element("id", "clear-all").click()
    driver.find_element("id", "clear-yes").click()
    wait_for(
        driver,
        "the empty state, and 'Cleared N traces.'",
        lambda: driver.find_element("id", "empty-state").is_displayed()
        and not list_state(driver)["rows"]
        and re.search(r"Cleared [1-9]\d* traces?\.", driver.find_element("id", "notice").text),
        lambda: page_text(driver),
    )
    left = api_json(base, "traces")["traces"]
    if left:
        raise Failure(f"the store still lists {len(left)} traces after clearing")


BROWSER_SCENARIOS = {
    "live": scenario_live,
    "trace": scenario_trace,
    "xss": scenario_xss,
    "refused": scenario_refused,
    "waterfall": scenario_waterfall,
    "keys": scenario_keys,
    "filter": scenario_filter,
    "pause": scenario_pause,
    "load": scenario_load,
    "clear": scenario_clear,
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
