"""The local page of ``expokit align live``: one self-contained HTML page on 127.0.0.1.

Endpoints: ``/`` (the page, inline CSS/JS, nothing from the internet), ``/state.json``
(:meth:`~expokit.calibration.live.LiveState.snapshot`) and ``/image/<name>.jpg`` for
``reference``, ``test`` (mirror undone), ``blend``, ``difference`` and ``checker`` (the test
view warped onto the reference, brought to its exposure). 503 before the first analysis.

``POST /calibrate`` (the page's "Shoot calibration stills & calibrate" button) asks the
live loop to calibrate (202; 409 while one is under way or without a calibration key). It
needs the ``X-Expokit: calibrate`` header, which a page from another origin cannot send
without a CORS preflight this server never grants, so no other web page can fire the
cameras.
"""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from expokit.calibration.live import IMAGES, LiveState
from expokit.core.errors import ExpokitError

__all__ = ["LiveServer", "render_page"]

LOOPBACK = ("127.0.0.1", "localhost")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>expokit align live</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:10px 16px;font-size:22px;font-weight:600}
#banner{padding:14px 16px;font-size:28px;font-weight:700;text-align:center}
#banner.ready{background:#1b7f3a}#banner.adjust{background:#a3561b}
#banner.waiting{background:#444}
main{display:grid;grid-template-columns:minmax(0,2fr) minmax(320px,1fr);gap:12px;padding:12px}
.views{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.views figure{margin:0}.views img{width:100%;background:#222;display:block}
figcaption{color:#aaa;font-size:12px;padding:2px 0}
#overlay{grid-column:1/3}
table{border-collapse:collapse;width:100%}
td{padding:4px 6px;border-bottom:1px solid #333;vertical-align:middle}
td.v{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.light{display:inline-block;width:12px;height:12px;border-radius:6px;background:#666}
.g{background:#2ecc71}.a{background:#f1c40f}.r{background:#e74c3c}
.arrow{font-size:18px;width:24px;text-align:center}
svg.spark{width:110px;height:24px}svg.spark polyline{fill:none;stroke:#6cf;stroke-width:1.5}
ul{padding-left:18px}button{background:#333;color:#eee;border:1px solid #555;padding:4px 8px}
#calibrate{font-size:15px;padding:8px 12px;margin:8px 0;background:#2a4d7a}
#calibrate:disabled{opacity:.5}#calibration{color:#ccc;font-size:13px;white-space:pre-wrap}
.hint{color:#aaa;font-size:12px}
button.on{background:#357}#meta{color:#aaa;font-size:12px}
</style></head>
<body data-live-ready="0">
<header>expokit align live</header>
<div id="banner" class="__CLASS__">__BANNER__</div>
<main><section>
<div class="views">
<figure><img id="img-reference" alt="reference view"><figcaption>reference</figcaption></figure>
<figure><img id="img-test" alt="test view"><figcaption>test (mirror undone)</figcaption></figure>
<figure id="overlay"><img id="img-overlay" alt="overlay">
<figcaption><button data-mode="blend" class="on">blend</button>
<button data-mode="difference">difference</button>
<button data-mode="checker">checkerboard</button> test warped onto the reference</figcaption>
</figure></div></section>
<section><table id="numbers"><tbody></tbody></table>
<h3>Advice (seen from behind the test camera)</h3><ul id="advice"></ul>
<p class="hint" id="parallax-hint">Parallax: hold the ChArUco board near the rig with
texture far behind it; the page then tells whether the entrance pupils coincide.</p>
<div id="calibrate-box"><button id="calibrate" hidden>Shoot calibration stills &amp;
calibrate</button><div id="calibration"></div></div>
<div id="meta"></div></section></main>
<script id="initial" type="application/json">__STATE__</script>
<script>
"use strict";
var mode = "blend";
var ROWS = [
  ["roll", "roll_deg", "deg"], ["scale", "scale_pct", "%"], ["shift", "shift_len_px", "px"],
  ["keystone", "keystone", "%"], ["EV offset", "ev_offset", "EV"],
  ["white balance", "white_balance", ""], ["focus ratio", "focus_ratio", ""],
  ["coverage", "coverage", "%"], ["parallax", "parallax", ""]
];
function fmt(v, d) { return (v === null || v === undefined || !isFinite(v)) ? "n/a" :
  (v >= 0 ? "+" : "") + v.toFixed(d); }
function light(err, limit) {
  if (err === null || !isFinite(err)) return "";
  return err <= limit ? "g" : (err <= 3 * limit ? "a" : "r");
}
function spark(hist, key) {
  var pts = hist.map(function (p) { return p[key]; }).filter(function (v) {
    return v !== null && isFinite(v); });
  if (pts.length < 2) return "";
  var lo = Math.min.apply(null, pts), hi = Math.max.apply(null, pts), span = (hi - lo) || 1;
  var xy = pts.map(function (v, i) {
    return (i * 108 / (pts.length - 1) + 1).toFixed(1) + "," +
      (22 - (v - lo) / span * 20).toFixed(1); });
  return '<svg class="spark" viewBox="0 0 110 24"><polyline points="' + xy.join(" ") +
    '"/></svg>';
}
function row(name, d, t, hist) {
  var v = "", l = "", a = "", s = "";
  switch (name) {
  case "roll":
    v = fmt(d.roll_deg, 3) + " deg"; l = light(Math.abs(d.roll_deg), t.max_roll_deg);
    a = Math.abs(d.roll_deg) <= t.max_roll_deg ? "" : (d.roll_deg > 0 ? "\\u21ba" : "\\u21bb");
    s = spark(hist, "roll_deg"); break;
  case "scale":
    v = fmt(d.scale_pct, 3) + " %"; l = light(Math.abs(d.scale_pct), t.max_scale_pct);
    a = Math.abs(d.scale_pct) <= t.max_scale_pct ? "" : (d.scale_pct > 0 ? "\\u2922" : "\\u2921");
    s = spark(hist, "scale_pct"); break;
  case "shift":
    var x = d.shift_px[0], y = d.shift_px[1];
    v = "x " + fmt(x, 2) + ", y " + fmt(y, 2) + " px"; l = light(d.shift_len_px, t.max_shift_px);
    if (d.shift_len_px > t.max_shift_px) {
      a = Math.abs(x) >= Math.abs(y) ? (x > 0 ? "\\u2192" : "\\u2190") :
        (y > 0 ? "\\u2193" : "\\u2191"); }
    s = spark(hist, "shift_len_px"); break;
  case "keystone":
    var kh = d.keystone.horizontal_pct, kv = d.keystone.vertical_pct;
    v = "h " + fmt(kh, 2) + ", v " + fmt(kv, 2) + " %";
    l = light(Math.max(Math.abs(kh), Math.abs(kv)), t.max_keystone_pct); break;
  case "EV offset":
    v = fmt(d.ev_offset, 2) + " EV";
    if (t.expected_ev !== null) {
      l = light(Math.abs(d.ev_offset - t.expected_ev), t.max_ev_error);
      a = l === "g" ? "" : (d.ev_offset > t.expected_ev ? "\\u2193" : "\\u2191"); }
    s = spark(hist, "ev_offset"); break;
  case "white balance":
    v = d.white_balance.map(function (c) { return isFinite(c) ? c.toFixed(3) : "n/a"; })
      .join(" / "); l = light(Math.max.apply(null, d.white_balance.map(function (c) {
      return Math.abs(c - 1); })), 0.05); break;
  case "focus ratio":
    v = d.focus_ratio === null ? "n/a" : d.focus_ratio.toFixed(3);
    if (d.focus_ratio !== null) {
      var lo = t.focus_ratio[0], hi = t.focus_ratio[1];
      l = d.focus_ratio >= lo && d.focus_ratio <= hi ? "g" :
        (d.focus_ratio >= lo - 0.2 && d.focus_ratio <= hi + 0.2 ? "a" : "r"); }
    s = spark(hist, "focus_ratio"); break;
  case "coverage":
    v = (d.coverage * 100).toFixed(1) + " %";
    l = d.coverage >= t.min_coverage ? "g" : (d.coverage >= t.min_coverage - 0.1 ? "a" : "r");
    s = spark(hist, "coverage"); break;
  case "parallax":
    if (!d.parallax) { v = "cannot tell"; l = ""; break; }
    var p = d.parallax;
    v = p.near_px !== null ? "near " + p.near_px.toFixed(1) + ", far " + p.far_px.toFixed(1) +
      " px" : p.parallax_px.toFixed(1) + " px apart";
    l = light(p.parallax_px, t.max_parallax_px); break;
  }
  return '<tr data-name="' + name + '"><td>' + name + '</td><td class="v">' + v +
    '</td><td class="arrow">' + a + '</td><td><span class="light ' + l +
    '"></span></td><td>' + s + "</td></tr>";
}
function esc(s) { return String(s).replace(/[&<>"]/g, function (c) {
  return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
function renderCalibration(state) {
  var button = document.getElementById("calibrate"), c = state.calibration;
  button.hidden = !state.can_calibrate;
  var busy = !!c && (c.status === "requested" || c.status === "running");
  button.disabled = busy;
  document.getElementById("calibration").textContent = c ? c.status + ": " + c.message : "";
}
function render(state) {
  renderCalibration(state);
  var d = state.latest, banner = document.getElementById("banner");
  if (!d) {
    banner.className = "waiting";
    banner.textContent = state.error ? "waiting: " + state.error : "waiting for the cameras";
    document.body.setAttribute("data-live-ready", "1"); return;
  }
  banner.className = d.verdict;
  banner.textContent = d.verdict === "ready" ? "READY" : "ADJUST (" + d.advice.length +
    " to fix)";
  var t = d.thresholds;
  document.querySelector("#numbers tbody").innerHTML = ROWS.map(function (r) {
    return row(r[0], d, t, state.history); }).join("");
  document.getElementById("advice").innerHTML = d.advice.map(function (s) {
    return "<li>" + esc(s) + "</li>"; }).join("");
  document.getElementById("parallax-hint").hidden = !!(d.parallax && d.parallax.near_px !== null);
  document.getElementById("meta").textContent = "pair #" + d.index + " (" + d.mode + "), " +
    d.latency_ms.toFixed(0) + " ms" + (state.pairs_per_s ? ", " +
    state.pairs_per_s.toFixed(1) + " pairs/s" : "") + (state.error ? "; " + state.error : "");
  var q = "?n=" + d.index;
  document.getElementById("img-reference").src = "/image/reference.jpg" + q;
  document.getElementById("img-test").src = "/image/test.jpg" + q;
  document.getElementById("img-overlay").src = "/image/" + mode + ".jpg" + q;
  document.body.setAttribute("data-live-ready", "1");
}
var last = JSON.parse(document.getElementById("initial").textContent);
render(last);
Array.prototype.forEach.call(document.querySelectorAll("button[data-mode]"), function (b) {
  b.addEventListener("click", function () {
    mode = b.getAttribute("data-mode");
    Array.prototype.forEach.call(document.querySelectorAll("button[data-mode]"),
      function (o) { o.className = o === b ? "on" : ""; });
    render(last);
  });
});
document.getElementById("calibrate").addEventListener("click", function () {
  fetch("/calibrate", {method: "POST", headers: {"X-Expokit": "calibrate"}})
    .then(function (r) { return r.json(); }).then(function (s) {
      last.calibration = s.calibration; renderCalibration(last); }).catch(function () {});
});
function poll() {
  fetch("/state.json", {cache: "no-store"}).then(function (r) { return r.json(); })
    .then(function (s) { last = s; render(s); }).catch(function () {})
    .then(function () { setTimeout(poll, 400); });
}
setTimeout(poll, 400);
</script></body></html>
"""


def render_page(snapshot: dict[str, Any]) -> str:
    """The page with ``snapshot`` embedded (rendered at once; the script then polls)."""
    latest = snapshot.get("latest")
    if latest is None:
        cls, banner = "waiting", "waiting for the cameras"
    else:
        cls = latest["verdict"]
        banner = "READY" if cls == "ready" else f"ADJUST ({len(latest['advice'])} to fix)"
    state = json.dumps(snapshot, allow_nan=False, default=str).replace("</", "<\\/")
    return (
        PAGE.replace("__CLASS__", html.escape(cls))
        .replace("__BANNER__", html.escape(banner))
        .replace("__STATE__", state)
    )


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = render_page(_json_safe(state.snapshot()))
            self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/state.json":
            body = json.dumps(_json_safe(state.snapshot()), allow_nan=False)
            self._send(200, body.encode("utf-8"), "application/json")
        elif path.startswith("/image/") and path.endswith(".jpg"):
            name = path[len("/image/") : -len(".jpg")]
            if name not in IMAGES:
                self._send(404, b"no such image", "text/plain")
                return
            data = state.image(name)
            if data is None:
                self._send(503, b"no analysis yet", "text/plain")
            else:
                self._send(200, data, "image/jpeg")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        state = self.server.state
        if self.path.split("?", 1)[0] != "/calibrate":
            self._send(404, b"not found", "text/plain")
            return
        if self.headers.get("X-Expokit") != "calibrate":
            self._send(403, b"missing the X-Expokit: calibrate header", "text/plain")
            return
        accepted = state.request_calibration()
        body = json.dumps(_json_safe({"accepted": accepted, "calibration": state.calibration}))
        self._send(202 if accepted else 409, body.encode("utf-8"), "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: LiveState


class LiveServer:
    """The page's HTTP server on a loopback address, in a thread; :meth:`stop` ends it.

    ``port=0`` picks a free port (:attr:`url` tells which).
    """

    def __init__(self, state: LiveState, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK:
            raise ExpokitError(f"the live page is served on the loopback only, not {host!r}")
        self._server = _Server((host, port), _Handler)
        self._server.state = state
        self._host = host
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}/"

    def start(self) -> LiveServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="expokit-live-page",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (returns within a second)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
