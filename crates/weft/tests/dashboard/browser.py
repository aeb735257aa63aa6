"""Drives every dashboard page in headless Chromium against a running weft.

Usage: browser.py ADMIN_ADDR ROUTER_ADDR SCREENSHOT_DIR

Run by crates/weft/tests/dashboard.rs after it sent traffic: /svc/books (healthy), /svc/pay
(5% failures), /svc/split (3:1 weighted split). Uses Playwright's Python API (PyPI
`playwright`) with the system Chromium (Debian `chromium`); no browser is downloaded.
Every check waits on the page (Playwright's expect retries) rather than sleeping.
"""

import re
import socket
import sys
import urllib.request

from playwright.sync_api import expect, sync_playwright

ADMIN, ROUTER, SHOTS = sys.argv[1:4]
BASE = f"http://{ADMIN}"
# The HTTP server refuses such bytes in a path, and logical names escape them, but the Host
# header reaches tap as sent.
HOSTILE = '<img src=x onerror="document.title=1">'


def metric_sum(text, name, labels):
    """Sum of the samples of `name` whose labels include every pair of `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def send(authority, path):
    """One GET through the router; a raw socket, so any path bytes go out as written."""
    with socket.create_connection(tuple(ROUTER.rsplit(":", 1))) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode())
        while s.recv(65536):
            pass


def main():
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        expect.set_options(timeout=20_000)

        # Overview: every service, numbers equal to /metrics; a request to a name with no
        # binding first, so the proxy-errors table has a row to check.
        send("nothing", "/")
        page.goto(BASE + "/#/overview")
        metrics = urllib.request.urlopen(BASE + "/metrics").read().decode()
        for service in ["/svc/books", "/svc/pay", "/svc/split"]:
            row = page.locator(f'tr.service[data-service="{service}"]')
            expect(row).to_be_visible()
            labels = {"router": "outbound", "service": service}
            total = int(metric_sum(metrics, "weft_responses_total", labels))
            good = metric_sum(metrics, "weft_responses_total", {**labels, "classification": "success"})
            expect(row.locator("td.requests")).to_have_attribute("data-value", str(total))
            expect(row.locator("td.success")).to_have_text(f"{100 * good / total:.2f}%")
            expect(row.locator("svg.spark")).to_have_count(1)
        expect(page.locator('tr.router[data-router="outbound"]')).to_be_visible()
        reason_row = page.locator("tr[data-reason]").first
        expect(reason_row).to_be_visible()
        reason = reason_row.get_attribute("data-reason")
        count = int(metric_sum(metrics, "weft_responses_total", {"router": "outbound", "error": reason}))
        assert count > 0, f"no weft_responses_total with error={reason}"
        expect(reason_row.locator("td").nth(1)).to_have_text(str(count))
        page.screenshot(path=f"{SHOTS}/overview.png", full_page=True)

        # Service: routes, binding, clients with endpoint shares.
        page.goto(BASE + "/#/service?router=outbound&service=/svc/books")
        expect(page.locator('tr[data-route="[default]"]')).to_be_visible()
        expect(page.locator(".node[data-type=bound]").first).to_contain_text("/#/fs/books")
        expect(page.locator("tr[data-endpoint]").first).to_contain_text("100.0%")
        expect(page.locator("tr[data-endpoint] td.accrual").first).to_have_text("alive")
        page.goto(BASE + "/#/service?router=outbound&service=/svc/pay")
        expect(page.locator("tr[data-endpoint] td.accrual").first).to_contain_text("ejected")
        page.screenshot(path=f"{SHOTS}/service.png", full_page=True)

        # Playground: the weighted split as a tree; a bad dtab at its line; neg explained.
        page.goto(BASE + "/#/playground?router=outbound&path=/svc/split")
        union = page.locator("#pg-out .node[data-type=union]").first
        expect(union).to_be_visible()
        weights = page.locator("#pg-out .weight")
        expect(weights.first).to_have_text("3 ×")
        expect(page.locator("#pg-out .node[data-type=bound]").first).to_contain_text("127.0.0.1:")
        page.screenshot(path=f"{SHOTS}/playground.png", full_page=True)
        before = len(errors)
        page.fill("#pg-dtab", "/svc => /#/fs;\n/svc/books => ")
        page.click("#pg-go")
        expect(page.locator("#pg-error")).to_contain_text("line 2, column 15")
        expect(page.locator("#pg-out pre.error")).to_contain_text("2 | /svc/books =>")
        # Chromium logs the refused request (400) itself; that one is expected.
        refused = errors[before:]
        assert len(refused) == 1 and "400" in refused[0], refused
        del errors[before:]
        page.fill("#pg-dtab", "/svc/books => /#/fs/books;")
        page.fill("#pg-path", "/svc/nothing")
        page.click("#pg-go")
        expect(page.locator("#pg-out .node[data-type=neg]").first).to_contain_text("no dentry or namer")
        # The l5d-dtab override field applies on top of the edited dtab, as the header would.
        page.fill("#pg-dtab", "/svc => /#/fs;")
        page.fill("#pg-path", "/svc/books")
        page.fill("#pg-local", "/svc/books => /#/fs/books-v2")
        page.click("#pg-go")
        expect(page.locator("#pg-out .node[data-type=bound]").first).to_contain_text("/#/fs/books-v2")
        config = urllib.request.urlopen(BASE + "/config.json").read().decode()
        assert "/svc/split" in config, "the router's dtab is unchanged"

        # Live tap: requests appear as they are sent; hostile text stays text; pause.
        page.goto(BASE + "/#/tap")
        page.click("#tap-start")
        expect(page.locator("#tap-info")).to_have_text("Streaming.")
        send(HOSTILE, "/hostile")
        hostile = page.locator('#tap-lines tr[data-path="/hostile"] td.authority')
        expect(hostile).to_have_text(HOSTILE)
        assert page.locator("#tap-lines img").count() == 0, "request text became markup"
        assert page.title() != "1", "a script from a request ran"
        page.click("#tap-start")
        expect(page.locator("#tap-info")).to_have_text("Stopped.")
        page.fill("#tap-service", "/svc/books")
        page.click("#tap-start")
        expect(page.locator("#tap-info")).to_have_text("Streaming.")
        for i in range(3):
            send("books", f"/tap-{i}")
            line = page.locator(f'#tap-lines tr[data-path="/tap-{i}"]')
            expect(line).to_be_visible()
            expect(line.locator("td.status")).to_have_text("200")
        send("pay", "/not-books")
        page.screenshot(path=f"{SHOTS}/tap.png", full_page=True)
        page.click("#tap-pause")
        send("books", "/while-paused")
        expect(page.locator("#tap-info")).to_have_text(re.compile(r"Paused \(1 missed\)"))
        page.click("#tap-pause")
        send("books", "/after-pause")
        expect(page.locator('#tap-lines tr[data-path="/after-pause"]')).to_be_visible()
        assert page.locator('#tap-lines tr[data-path="/while-paused"]').count() == 0
        assert page.locator('#tap-lines tr[data-path="/not-books"]').count() == 0, "filter"
        page.click("#tap-start")

        # The other filters: method, path prefix and status, each leaving out what differs.
        page.fill("#tap-service", "")
        page.fill("#tap-method", "GET")
        page.fill("#tap-path", "/only")
        page.fill("#tap-status", "200")
        page.click("#tap-start")
        expect(page.locator("#tap-info")).to_have_text("Streaming.")
        send("books", "/other")
        send("nothing", "/only-unbound")
        send("books", "/only-books")
        expect(page.locator('#tap-lines tr[data-path="/only-books"] td.status')).to_have_text("200")
        assert page.locator('#tap-lines tr[data-path="/other"]').count() == 0, "path filter"
        # The status filter holds back response events (a request's line shows before its
        # status is known); the unbound request's response, sent first, must not show.
        unbound = page.locator('#tap-lines tr[data-path="/only-unbound"] td.status')
        assert unbound.count() == 0 or unbound.first.inner_text() == "…", "status filter"
        page.click("#tap-start")

        # Hostile text sent earlier in a Host header reached the overview as a service name
        # too: it stays text there and on its service page.
        page.goto(BASE + "/#/overview")
        expect(page.locator('tr.service[data-service="/svc/books"]')).to_be_visible()
        hostile_rows = page.locator("tr.service").filter(has_text="img")
        assert page.locator("main img").count() == 0, "a service name became markup"
        assert page.title() != "1", "a script from a service name ran"
        assert hostile_rows.count() == 1, "the hostile Host names a service of its own"
        hostile_rows.first.locator("a").first.click()
        expect(page.locator("h2").first).to_be_visible()
        assert page.locator("main img").count() == 0, "a service name became markup"
        assert page.title() != "1", "a script from a service name ran"

        # Objectives: pay (5% failures) has exhausted a 99.9% budget; books is ok.
        page.goto(BASE + "/#/objectives")
        pay = page.locator('tr[data-service="/svc/pay"][data-objective="success-rate"]')
        expect(pay).to_have_attribute("data-verdict", "exhausted")
        expect(pay.locator(".badge")).to_have_text("exhausted")
        books = page.locator('tr[data-service="/svc/books"][data-objective="success-rate"]')
        expect(books).to_have_attribute("data-verdict", "ok")
        page.screenshot(path=f"{SHOTS}/objectives.png", full_page=True)

        browser.close()
    assert not errors, f"console errors: {errors}"
    print("ok")


if __name__ == "__main__":
    main()
