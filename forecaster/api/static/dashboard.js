// The forecaster dashboard: fetches /v1/dashboard/{series} and draws it with uPlot
// (npm uplot@1.6.32, vendored in static/vendor/). Plain ES2017, no build step.
(function () {
  "use strict";

  var TOKEN_KEY = "forecaster.token";
  var REFRESH_MS = 60000;
  var el = function (id) { return document.getElementById(id); };
  // Axes and legends in UTC, like the API, whatever the browser's time zone.
  var utc = function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };
  var state = {
    plot: null, errorPlot: null, replicaPlot: null, data: null, timer: null,
    requests: 0, drawnFor: null,
    hidden: { chart: {}, "error-chart": {} },  // lines switched off in a chart's legend
  };
  window.forecasterDashboard = state;

  function headers() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  // The status line changes each minute (its clock, the count of observations), so it
  // is not a live region; what a screen reader should hear (the series shown and its
  // warnings, an error) goes to #announce, and only when that changed.
  function setStatus(text, isError, spoken) {
    var s = el("status");
    s.textContent = text;
    s.className = isError ? "error" : "";
    if (spoken === undefined) spoken = isError ? text : null;
    if (spoken !== null && el("announce").textContent !== spoken) el("announce").textContent = spoken;
  }

  // FastAPI's 422 detail is a list of {loc, msg}; other errors carry a string.
  function explain(body, r) {
    var detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail.map(function (d) { return d && d.msg ? d.msg : JSON.stringify(d); }).join("; ");
    }
    return r.status + " " + r.statusText;
  }

  function getJSON(url) {
    return fetch(url, { headers: headers() }).catch(function (err) {
      // the API is down or restarting: say so (not "Failed to fetch"); the page retries
      throw new Error("cannot reach the API (" + err.message + "); retrying every minute");
    }).then(function (r) {
      if (r.status === 401 || r.status === 403) {
        el("token-form").hidden = false;
        throw new Error(sessionStorage.getItem(TOKEN_KEY)
          ? "the API token was refused (" + r.status + "): enter the right one"
          : "this server needs an API token for reads");
      }
      if (!r.ok) {
        return r.json().then(
          function (b) { throw new Error(explain(b, r)); },
          function () { throw new Error(r.status + " " + r.statusText); }
        );
      }
      return r.json();
    });
  }

  function params() {
    return new URLSearchParams(window.location.search);
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (digits === undefined && a > 0 && a < 1) {
      // three significant digits: a 0.0012 s latency is not "0.001"
      return Number(v).toLocaleString(undefined, { maximumSignificantDigits: 3, minimumSignificantDigits: 3 });
    }
    var d = digits !== undefined ? digits : a >= 1000 ? 0 : a >= 10 ? 1 : 2;
    return Number(v).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d });
  }

  // Value-axis tick labels that tell ticks apart at any magnitude: uPlot's default
  // rounds to 3 decimals (every tick of a 0.0012 s latency read "0.001") and writes
  // large values in full (3,000,000,000,000 did not fit the axis and was cut off).
  // 10 000 and above get an SI prefix (k, M, G, T, P, E); decimals follow the step.
  var PREFIX = { 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E" };
  function ticks(u, splits, axisIdx, space, incr) {
    var top = Math.max.apply(null, splits.map(function (v) { return Math.abs(v); }));
    var exp = top >= 1e4 ? Math.min(18, Math.floor(Math.log10(top) / 3) * 3) : 0;
    var scale = Math.pow(10, exp);
    var step = Math.abs(incr) / scale;
    var d = 0;
    while (d < 12 && step > 0 && Math.abs(Math.round(step * Math.pow(10, d)) - step * Math.pow(10, d)) > 1e-6 * step * Math.pow(10, d)) d++;
    return splits.map(function (v) {
      return (v / scale).toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }) + PREFIX[exp];
    });
  }

  function clock() {  // the status line's time, in UTC like everything else on the page
    return new Date().toISOString().slice(11, 19) + "Z";
  }

  function when(epoch) {
    if (epoch === null || epoch === undefined) return "–";
    return new Date(epoch * 1000).toISOString().slice(0, 16).replace("T", " ") + "Z";
  }

  function text(tag, content, cls) {
    var node = document.createElement(tag);
    node.textContent = content;
    if (cls) node.className = cls;
    return node;
  }

  // -- data alignment ------------------------------------------------------------------
  // uPlot wants one shared x array; every line is placed on the union of timestamps.
  function align(doc) {
    var lines = [doc.actual];
    var fc = doc.forecast;
    if (fc) lines.push(fc);
    var h1 = doc.earlier.filter(function (e) { return e.label === "1h"; })[0] || null;
    var d1 = doc.earlier.filter(function (e) { return e.label === "1d"; })[0] || null;
    if (h1) lines.push(h1);
    if (d1) lines.push(d1);
    var seen = {};
    var xs = [];
    lines.forEach(function (line) {
      line.t.forEach(function (t) {
        if (!seen[t]) { seen[t] = true; xs.push(t); }
      });
    });
    xs.sort(function (a, b) { return a - b; });
    var index = {};
    xs.forEach(function (t, i) { index[t] = i; });
    function column(t, values) {
      var out = new Array(xs.length).fill(null);
      if (t) t.forEach(function (ts, i) { out[index[ts]] = values[i]; });
      return out;
    }
    return {
      xs: xs,
      actual: column(doc.actual.t, doc.actual.y),
      yhat: column(fc && fc.t, fc && fc.yhat),
      lower: column(fc && fc.t, fc && fc.lower),
      upper: column(fc && fc.t, fc && fc.upper),
      h1: column(h1 && h1.t, h1 && h1.yhat),
      d1: column(d1 && d1.t, d1 && d1.yhat),
      refLower: column(fc && fc.reference && fc.t, fc && fc.reference && fc.reference.lower),
      refUpper: column(fc && fc.reference && fc.t, fc && fc.reference && fc.reference.upper),
      hasReference: !!(fc && fc.reference),
      h1Doc: h1,
      d1Doc: d1,
    };
  }

  // Observations more than 1.5 steps apart are not joined by a line: one drawn across
  // an ingest outage showed load that was never measured. A uPlot `gaps` hook, so the
  // alignment's nulls (timestamps only other lines have) are still spanned.
  function observationGaps(step) {
    return function (u, sidx, idx0, idx1) {
      var xs = u.data[0], ys = u.data[sidx], gaps = [];
      var prev = idx0 - 1;
      while (prev >= 0 && (ys[prev] === null || ys[prev] === undefined)) prev--;
      for (var i = idx0; i < xs.length; i++) {
        if (ys[i] === null || ys[i] === undefined) continue;
        if (prev >= 0 && xs[i] - xs[prev] > 1.5 * step) {
          gaps.push([
            Math.round(u.valToPos(xs[prev], "x", true)),
            Math.round(u.valToPos(xs[i], "x", true)),
          ]);
        }
        prev = i;
        if (i > idx1) break;
      }
      return gaps;
    };
  }

  // -- main chart ----------------------------------------------------------------------
  function overlays(doc) {
    return function (u) {
      var ctx = u.ctx;
      var top = u.bbox.top;
      var height = u.bbox.height;
      ctx.save();
      ctx.fillStyle = "rgba(200, 40, 30, 0.12)";
      doc.regressions.forEach(function (ev) {
        var x0 = u.valToPos(ev.start, "x", true);
        var x1 = u.valToPos(ev.end === null || ev.end === undefined ? doc.now : ev.end, "x", true);
        var left = Math.max(u.bbox.left, Math.min(x0, x1));
        var right = Math.min(u.bbox.left + u.bbox.width, Math.max(x0, x1));
        if (right > left) ctx.fillRect(left, top, Math.max(right - left, 2), height);
      });
      var nowX = u.valToPos(doc.now, "x", true);
      if (nowX >= u.bbox.left && nowX <= u.bbox.left + u.bbox.width) {
        ctx.strokeStyle = "rgba(60, 60, 60, 0.6)";
        ctx.setLineDash([4, 4]);
        ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.moveTo(nowX, top);
        ctx.lineTo(nowX, top + height);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = "rgba(60, 60, 60, 0.8)";
        ctx.font = Math.round(11 * devicePixelRatio) + "px system-ui, sans-serif";
        ctx.fillText("now", nowX + 4, top + 12 * devicePixelRatio);
      }
      ctx.restore();
    };
  }

  // A phone-width screen (the CSS's breakpoint too): lower charts, no value-axis label
  // (the chart's title names the unit), so the plot keeps most of the width.
  function narrow() {
    return window.matchMedia("(max-width: 600px)").matches;
  }

  function chartWidth(node) {
    return Math.max(200, node.clientWidth || node.parentNode.clientWidth - 20);
  }

  var HEIGHTS = { chart: [380, 260], "error-chart": [160, 130], replicas: [160, 130] };
  function chartHeight(id) {
    return HEIGHTS[id][narrow() ? 1 : 0];
  }

  // Time-axis ticks at least 70 px apart: at uPlot's 50, "12:00am" labels ran together.
  var TIME_AXIS = { space: 70 };

  function valueAxis(unit, extra) {
    var axis = { label: narrow() ? null : unit || "value", size: 70, values: ticks };
    Object.keys(extra || {}).forEach(function (k) { axis[k] = extra[k]; });
    return axis;
  }

  // -- zoom and pan ----------------------------------------------------------------------
  // Besides uPlot's drag and double-click, each chart takes keyboard focus (arrows pan,
  // + and - zoom about the middle, Home and End go to either end, 0 or Escape show it
  // all), a pinch zooms and a sideways swipe pans on a touch screen, and a "Reset zoom"
  // button shows while zoomed. The range stays inside the data, a few steps at least.
  function extent(u) {
    var xs = u.data[0];
    return xs.length ? [xs[0], xs[xs.length - 1]] : null;
  }

  function isZoomed(u) {
    var ext = extent(u);
    return !!ext && (u.scales.x.min > ext[0] + 1e-6 || u.scales.x.max < ext[1] - 1e-6);
  }

  function setRange(u, min, max) {
    var ext = extent(u);
    if (!ext || !(max > min)) return;
    var minSpan = 4 * ((state.data && state.data.step_seconds) || 60);
    var span = Math.min(Math.max(max - min, minSpan), ext[1] - ext[0]);
    var lo = (min + max) / 2 - span / 2;
    lo = Math.max(ext[0], Math.min(lo, ext[1] - span));
    u.setScale("x", { min: lo, max: lo + span });
  }

  function resetZoom(u) {
    var ext = extent(u);
    if (ext) u.setScale("x", { min: ext[0], max: ext[1] });
  }

  // A line switched off in the legend stays off when the chart is redrawn (the minute
  // refresh, another window or series): `hidden` is applied to the new chart's series
  // and this setSeries hook keeps it up to date.
  function keepHidden(id, series) {
    series.forEach(function (s, i) { if (i > 0 && state.hidden[id][i]) s.show = false; });
    return function (u, i, opts) {
      if (i > 0 && opts && opts.show !== undefined) state.hidden[id][i] = !opts.show;
    };
  }

  // Legend entries hide or show their line on a click: make them buttons a keyboard
  // reaches too (Tab, then Enter or Space), saying whether the line is shown.
  function legendButtons(u) {
    var rows = u.root.querySelectorAll(".u-legend .u-series");
    Array.prototype.forEach.call(rows, function (row, i) {
      var label = row.querySelector("th");
      if (i === 0 || !label) return;  // the time row toggles nothing
      label.tabIndex = 0;
      label.setAttribute("role", "button");
      label.setAttribute("aria-pressed", String(!!u.series[i].show));
      label.addEventListener("keydown", function (ev) {
        if (ev.key !== "Enter" && ev.key !== " ") return;
        ev.preventDefault();
        ev.stopPropagation();
        label.click();
      });
    });
  }

  function pressedState(u, i, opts) {
    if (i > 0 && opts && opts.show !== undefined) {
      var label = u.root.querySelectorAll(".u-legend .u-series")[i];
      label = label && label.querySelector("th");
      if (label) label.setAttribute("aria-pressed", String(!!opts.show));
    }
  }

  // The error chart shows the time range the main chart is zoomed to (its own whole
  // range when that one is not zoomed): two stacked time axes showing different hours
  // misled. A setScale hook of the main chart; the error chart's own zoom stays its own.
  function follow(u, key) {
    var e = state.errorPlot;
    if (!e || u !== state.plot || (key !== undefined && key !== "x")) return;
    var range = isZoomed(u) ? [u.scales.x.min, u.scales.x.max] : extent(e);
    if (isZoomed(u)) e.setScale("x", { min: range[0], max: range[1] });
    else resetZoom(e);
    errorRangeNote(e, range[0], range[1]);
  }

  // Zoomed into the future (or a gap), the error chart had nothing to draw and stayed
  // a blank box: say why over it while the range (min, max) holds no error point.
  // (The range is passed in: uPlot applies a setScale later, in a microtask.)
  function errorRangeNote(e, min, max) {
    var node = el("error-chart");
    var old = node.querySelector(".chart-empty");
    var inside = e.data[0].some(function (t) { return t >= min && t <= max; });
    if (inside) {
      if (old) old.remove();
    } else if (!old) {
      node.appendChild(text("p", "No error to show in this range: it needs an actual " +
        "and the forecast made an hour before it (the future has no actuals yet).",
        "chart-empty"));
    }
  }

  // shows the chart's "Reset zoom" button while it is zoomed (a uPlot setScale hook)
  function showReset(id) {
    return function (u, key) {
      if (key === undefined || key === "x") el(id + "-reset").hidden = !isZoomed(u);
    };
  }

  function zoomable(id, plotKey) {
    var node = el(id);
    var plot = function () {
      var u = state[plotKey];
      return u && extent(u) ? u : null;
    };
    node.addEventListener("keydown", function (ev) {
      var u = plot();
      if (!u || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      var min = u.scales.x.min, max = u.scales.x.max, span = max - min;
      var ext = extent(u);
      var shift = span * (ev.shiftKey ? 0.5 : 0.1);
      switch (ev.key) {
        case "ArrowLeft": setRange(u, min - shift, max - shift); break;
        case "ArrowRight": setRange(u, min + shift, max + shift); break;
        case "+": case "=": setRange(u, min + span / 4, max - span / 4); break;
        case "-": case "_": setRange(u, min - span / 2, max + span / 2); break;
        case "Home": setRange(u, ext[0], ext[0] + span); break;
        case "End": setRange(u, ext[1] - span, ext[1]); break;
        case "0": case "Escape": resetZoom(u); break;
        default: return;
      }
      ev.preventDefault();
    });
    el(id + "-reset").addEventListener("click", function () {
      var u = plot();
      if (u) resetZoom(u);
      node.focus();  // the button hides itself: keep the focus on the chart it reset
    });
    // touch: the gesture's start (scale and finger positions) is the reference for
    // each move, and is taken again whenever a finger is added or lifted
    var touch = null;
    var begin = function (ev) {
      var u = plot();
      touch = u && ev.touches.length ? {
        left: u.over.getBoundingClientRect().left, width: u.over.clientWidth,
        min: u.scales.x.min, max: u.scales.x.max,
        xs: Array.prototype.map.call(ev.touches, function (t) { return t.clientX; }),
      } : null;
    };
    node.addEventListener("touchstart", begin, { passive: true });
    node.addEventListener("touchend", begin, { passive: true });
    node.addEventListener("touchcancel", begin, { passive: true });
    node.addEventListener("touchmove", function (ev) {
      var u = plot();
      if (!u || !touch || touch.width <= 0) return;
      var xs = Array.prototype.map.call(ev.touches, function (t) { return t.clientX; });
      var span0 = touch.max - touch.min;
      if (xs.length === 2 && touch.xs.length === 2) {
        var d0 = Math.abs(touch.xs[0] - touch.xs[1]), d1 = Math.abs(xs[0] - xs[1]);
        if (d0 < 10 || d1 < 10) return;
        // the time under the fingers' midpoint stays under it
        var at = touch.min + ((touch.xs[0] + touch.xs[1]) / 2 - touch.left) / touch.width * span0;
        var span = span0 * d0 / d1;
        var min = at - ((xs[0] + xs[1]) / 2 - touch.left) / touch.width * span;
        setRange(u, min, min + span);
      } else if (xs.length === 1 && touch.xs.length === 1) {
        var dt = (touch.xs[0] - xs[0]) / touch.width * span0;
        setRange(u, touch.min + dt, touch.max + dt);
      } else {
        return;
      }
      if (ev.cancelable) ev.preventDefault();
    }, { passive: false });
  }

  // The x range the user zoomed to, when a chart is redrawn for the same series and
  // window (the minute refresh): kept instead of reset to the whole window.
  function keptZoom(u, same) {
    return u && same && isZoomed(u) ? { min: u.scales.x.min, max: u.scales.x.max } : null;
  }

  // How much earlier an "earlier" forecast was made: the newest one made at least an
  // hour (a day) before now, so older than that when publishing stopped for a while,
  // and then the legend must not say "1 h".
  function madeEarlier(e, nominal, seconds, now) {
    var age = e ? now - e.generated_at : seconds;
    if (age <= seconds * 1.25) return nominal;
    var h = age / 3600;
    return h < 36 ? Math.round(h * 10) / 10 + " h" : Math.round(h / 2.4) / 10 + " days";
  }

  function draw(doc) {
    var a = align(doc);
    var unit = doc.unit ? " " + doc.unit : "";
    var fc = doc.forecast;
    var level = fc ? fc.level : 90;
    var value = function (u, v) { return v === null || v === undefined ? "–" : fmt(v) + unit; };
    var series = [
      { label: "time (UTC)", value: function (u, v) { return v === null ? "–" : when(v); } },
      { label: "actual", stroke: "#1d2433", width: 1.5, gaps: observationGaps(doc.step_seconds), value: value },
      { label: "forecast" + (fc ? " (" + fc.model.name + ")" : ""), stroke: "#e07b00", width: 2, spanGaps: true, value: value },
      { label: level + "% lower", stroke: "rgba(224, 123, 0, 0.35)", width: 1, spanGaps: true, value: value },
      { label: level + "% upper", stroke: "rgba(224, 123, 0, 0.35)", width: 1, spanGaps: true, value: value },
      { label: "made " + madeEarlier(a.h1Doc, "1 h", 3600, doc.now) + " earlier", stroke: "#7b3fbf", width: 1.5, dash: [6, 4], spanGaps: true, show: !!a.h1Doc, value: value },
      { label: "made " + madeEarlier(a.d1Doc, "1 day", 86400, doc.now) + " earlier", stroke: "#2e8b57", width: 1.5, dash: [2, 3], spanGaps: true, show: !!a.d1Doc, value: value },
      // watched series: the band the regression detector judges against (no recent-level correction)
      { label: "detector band lower", stroke: "rgba(200, 40, 30, 0.7)", width: 1, dash: [3, 3], spanGaps: true, show: a.hasReference, value: value },
      { label: "detector band upper", stroke: "rgba(200, 40, 30, 0.7)", width: 1, dash: [3, 3], spanGaps: true, show: a.hasReference, value: value },
    ];
    var data = [a.xs, a.actual, a.yhat, a.lower, a.upper, a.h1, a.d1, a.refLower, a.refUpper];
    var node = el("chart");
    var opts = {
      width: chartWidth(node),
      height: chartHeight("chart"),
      scales: { x: { time: true } },
      tzDate: utc,
      series: series,
      bands: [{ series: [4, 3], fill: "rgba(224, 123, 0, 0.16)" }],
      axes: [TIME_AXIS, valueAxis(doc.unit)],
      cursor: { drag: { x: true, y: false }, focus: { prox: 16 } },
      legend: { live: true },
      hooks: { draw: [overlays(doc)], setScale: [showReset("chart"), follow], setSeries: [keepHidden("chart", series), pressedState] },
    };
    var same = state.drawnFor === doc.series + "|" + doc.window_seconds;
    var zoom = keptZoom(state.plot, same);
    if (state.plot) state.plot.destroy();
    node.textContent = "";
    state.plot = new uPlot(opts, data, node);
    state.drawnFor = doc.series + "|" + doc.window_seconds;
    if (zoom) state.plot.setScale("x", zoom);
    showReset("chart")(state.plot);
    legendButtons(state.plot);
    if (!a.xs.length) {
      // nothing at all to draw: say why over the empty plot, not a blank box
      var why = doc.last_observation === null || doc.last_observation === undefined
        ? "no observations stored yet"
        : "no observations in this window (the newest is from " + when(doc.last_observation) + ")";
      node.appendChild(text("p", "Nothing to draw: " + why +
        (fc ? "" : " and no forecast published yet") + ".", "chart-empty"));
    }
    var drawnPoints = a.actual.filter(function (v) { return v !== null; }).length;
    node.dataset.drawn = drawnPoints > 0 ? "true" : "false";
    node.dataset.points = String(drawnPoints);
    var title = el("chart-title");
    title.textContent = "";
    // a member's long name wraps between its labels (after "{" and ","), not mid-word
    doc.series.split(/([{,])/).forEach(function (part) {
      title.appendChild(document.createTextNode(part));
      if (part === "{" || part === ",") title.appendChild(document.createElement("wbr"));
    });
    title.appendChild(document.createTextNode(
      ": predicted vs actual" + (doc.unit ? " (" + doc.unit + ")" : "")));
    drawError(doc, a, same);
  }

  function drawError(doc, a, same) {
    var node = el("error-chart");
    el("error-title").textContent = "Error of the forecast made " +
      madeEarlier(a.h1Doc, "an hour", 3600, doc.now) + " earlier";
    var xs = [], err = [];
    a.xs.forEach(function (t, i) {
      if (a.actual[i] !== null && a.h1[i] !== null) {
        xs.push(t);
        err.push(a.actual[i] - a.h1[i]);
      }
    });
    var zoom = keptZoom(state.errorPlot, same);
    if (state.errorPlot) { state.errorPlot.destroy(); state.errorPlot = null; }
    node.textContent = "";
    el("error-chart-reset").hidden = true;
    if (!xs.length) {
      node.appendChild(text("p", "no forecast from an hour earlier overlaps the actuals yet", "muted"));
      return;
    }
    var unit = doc.unit ? " " + doc.unit : "";
    var series = [
      { label: "time (UTC)", value: function (u, v) { return v === null ? "–" : when(v); } },
      { label: "error", stroke: "#7b3fbf", fill: "rgba(123, 63, 191, 0.12)", width: 1, gaps: observationGaps(doc.step_seconds), value: function (u, v) { return v === null ? "–" : fmt(v) + unit; } },
    ];
    state.errorPlot = new uPlot({
      width: chartWidth(node),
      height: chartHeight("error-chart"),
      scales: { x: { time: true } },
      tzDate: utc,
      series: series,
      axes: [TIME_AXIS, valueAxis(doc.unit)],
      hooks: { setScale: [showReset("error-chart")], setSeries: [keepHidden("error-chart", series), pressedState] },
    }, [xs, err], node);
    if (state.plot && isZoomed(state.plot)) follow(state.plot);
    else if (zoom) state.errorPlot.setScale("x", zoom);
    legendButtons(state.errorPlot);
  }

  // -- panels --------------------------------------------------------------------------
  function definitionList(pairs) {
    var dl = document.createElement("dl");
    pairs.forEach(function (p) {
      dl.appendChild(text("dt", p[0]));
      dl.appendChild(text("dd", p[1]));
    });
    return dl;
  }

  // `stack`: on a narrow screen each row becomes a block of "column: value" lines
  // (dashboard.css), so a long reason is not squeezed into a column of letters. The
  // roles keep it a table for screen readers, which drop them for display: block.
  function table(head, rows, numericFrom, stack) {
    var t = document.createElement("table");
    var tr = document.createElement("tr");
    head.forEach(function (h, i) { tr.appendChild(text("th", h, i >= numericFrom ? "num" : "")); });
    var thead = document.createElement("thead");
    thead.appendChild(tr);
    t.appendChild(thead);
    var body = document.createElement("tbody");
    rows.forEach(function (row) {
      var r = document.createElement("tr");
      if (row.cls) r.className = row.cls;
      row.cells.forEach(function (c, i) {
        var td;
        if (c instanceof Node) {
          td = document.createElement("td");
          td.appendChild(c);
        } else {
          td = text("td", c, i >= numericFrom ? "num" : "");
        }
        if (stack) td.dataset.label = head[i];
        r.appendChild(td);
      });
      body.appendChild(r);
    });
    t.appendChild(body);
    if (stack) {
      t.className = "stack";
      t.setAttribute("role", "table");
      [thead, body].forEach(function (g) { g.setAttribute("role", "rowgroup"); });
      Array.prototype.forEach.call(t.querySelectorAll("tr"), function (row) { row.setAttribute("role", "row"); });
      Array.prototype.forEach.call(t.querySelectorAll("th"), function (c) { c.setAttribute("role", "columnheader"); });
      Array.prototype.forEach.call(t.querySelectorAll("td"), function (c) { c.setAttribute("role", "cell"); });
    }
    return t;
  }

  function fill(id, node) {
    var target = el(id);
    target.textContent = "";
    target.appendChild(node);
  }

  // The backtest's metric keys as the table heads them, with what each measures (the
  // head's tooltip, from docs/EVALUATION.md) and how its values are written.
  var METRICS = {
    mase: ["MASE", "mean absolute scaled error: MAE over the horizon / in-sample MAE of the daily seasonal naive forecast, averaged over origins; below 1 beats that baseline"],
    mase_median: ["MASE median", "median of the per-origin MASE"],
    mase_trimmed: ["MASE trimmed", "mean per-origin MASE without the worst 20% of origins"],
    smape: ["sMAPE %", "symmetric mean absolute percentage error", function (v) { return fmt(v, 1); }],
    coverage: ["coverage", "share of actuals inside the forecast's interval (a 90% interval should cover 85-95%)",
      function (v) { return v === null || v === undefined || !isFinite(v) ? "–" : fmt(v * 100, 0) + "%"; }],
    width: ["band width", "mean interval width / mean actual", function (v) { return fmt(v, 2); }],
    mae: ["MAE", "mean absolute error, in the series' unit", function (v) { return fmt(v); }],
  };

  function metricCell(m, v) {
    var meta = METRICS[m];
    return meta && meta[2] ? meta[2](v) : fmt(v, 3);
  }

  function panels(doc) {
    var c = doc.champion;
    var fc = doc.forecast;
    if (c) {
      fill("champion", definitionList([
        ["estimator", c.estimator],
        ["version", c.version],
        ["MLflow run", c.run_id],
        ["backtest MASE", fmt(c.mase, 3)],
        ["promoted", when(c.promoted_at)],
        ["forecast made", fc ? when(fc.generated_at) : "nothing published"],
        ["interval", fc ? fc.level + "% central" : "–"],
      ]));
    } else {
      fill("champion", text("p", "no champion yet", "muted"));
    }
    var latest = doc.trainings[0];
    if (latest && Object.keys(latest.scores).length) {
      var metrics = [];
      Object.keys(latest.scores).forEach(function (est) {
        Object.keys(latest.scores[est]).forEach(function (m) {
          if (metrics.indexOf(m) < 0) metrics.push(m);
        });
      });
      var names = Object.keys(latest.scores).sort(function (x, y) {
        var a = latest.scores[x].mase, b = latest.scores[y].mase;
        return (a === null || a === undefined ? Infinity : a) - (b === null || b === undefined ? Infinity : b);
      });
      var scores = table(
        ["estimator"].concat(metrics.map(function (m) { return METRICS[m] ? METRICS[m][0] : m; })),
        names.map(function (est) {
          return {
            cls: est === latest.estimator ? "chosen" : "",
            cells: [est + (est === latest.estimator ? " (chosen)" : "")].concat(
              metrics.map(function (m) { return metricCell(m, latest.scores[est][m]); })
            ),
          };
        }),
        1
      );
      Array.prototype.forEach.call(scores.querySelectorAll("th"), function (th, i) {
        if (i > 0) th.title = METRICS[metrics[i - 1]] ? METRICS[metrics[i - 1]][1] : metrics[i - 1];
      });
      // wider than its panel (seven metrics on a phone): it scrolls sideways on its own,
      // under an estimator column that stays put (dashboard.css)
      var scroller = document.createElement("div");
      scroller.className = "table-scroll";
      scroller.appendChild(scores);
      fill("backtest", scroller);
    } else {
      fill("backtest", text("p", "no training recorded", "muted"));
    }
    if (doc.trainings.length) {
      fill("trainings", table(
        ["trained", "estimator", "MASE", "promoted", "reason"],
        doc.trainings.map(function (t) {
          return {
            cls: "",
            cells: [
              when(t.trained_at), t.estimator, fmt(t.mase, 3),
              text("span", t.promoted ? "yes" : "no", "badge " + (t.promoted ? "yes" : "no")),
              t.reason || "",
            ],
          };
        }),
        99,
        true
      ));
    } else {
      fill("trainings", text("p", "none", "muted"));
    }
    if (doc.regressions.length) {
      fill("events", table(
        ["start", "end", "direction", "peak score"],
        doc.regressions.map(function (ev) {
          // an event closed because the series stopped being watched says so
          var end = ev.end ? when(ev.end) + (ev.closed_reason ? " (" + ev.closed_reason + ")" : "") : "open";
          return { cls: "", cells: [when(ev.start), end, ev.direction || "–", fmt(ev.score, 2)] };
        }),
        3,
        true
      ));
    } else {
      fill("events", text("p", "none in this window", "muted"));
    }
    drawReplicas(doc);
  }

  // Replica plan (when the URL names target_per_replica): replicas per forecast step.
  function drawReplicas(doc) {
    var plan = doc.replicas;
    el("replicas-panel").hidden = !plan;
    if (state.replicaPlot) { state.replicaPlot.destroy(); state.replicaPlot = null; }
    if (!plan) return;
    var node = el("replicas");
    node.textContent = "";
    node.appendChild(text("p",
      "ceil(forecast q" + plan.quantile + " over the next " + plan.lead_time_seconds / 60 +
      " min / " + fmt(plan.target_per_replica) + (doc.unit ? " " + doc.unit : "") + " per replica)",
      "hint"));
    var chart = document.createElement("div");
    node.appendChild(chart);
    state.replicaPlot = new uPlot({
      width: chartWidth(node),
      height: chartHeight("replicas"),
      scales: { x: { time: true } },
      tzDate: utc,
      series: [
        { label: "time (UTC)", value: function (u, v) { return v === null ? "–" : when(v); } },
        { label: "replicas", stroke: "#1f5fbf", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
      ],
      axes: [TIME_AXIS, { size: 40 }],
    }, [plan.t, plan.replicas], chart);
  }

  // -- loading -------------------------------------------------------------------------
  function load() {
    var name = el("series").value;
    if (!name) return Promise.resolve();
    var win = el("window").value;
    var query = new URLSearchParams({ series: name, window: win });
    setStatus("loading " + name + "…");
    var wanted = params();
    var extra = new URLSearchParams({ window: win });
    ["target_per_replica", "quantile", "lead_time"].forEach(function (key) {
      if (wanted.get(key)) { extra.set(key, wanted.get(key)); query.set(key, wanted.get(key)); }
    });
    history.replaceState(null, "", "?" + query.toString());
    // the whole name as one path segment: a label value like "/api/../admin" split on
    // "/" had its ".." segments resolved away by the browser
    var url = "v1/dashboard/" + encodeURIComponent(name) + "?" + extra.toString();
    var ticket = ++state.requests;  // only the newest request may draw
    return getJSON(url).then(function (doc) {
      if (ticket !== state.requests) return;
      state.data = doc;
      document.title = doc.series + " · forecaster";  // tell several open tabs apart
      draw(doc);
      panels(doc);
      var said = summary(doc);
      setStatus(said.text, doc.actual.t.length === 0 || doc.stale, said.spoken);
    }).catch(function (err) {
      if (ticket === state.requests) setStatus(err.message, true);
    });
  }

  function summary(doc) {
    var parts = ["updated " + clock(), doc.actual.t.length + " observations"];
    var volatile = parts.length;
    if (doc.actual.t.length === 0) {
      parts.push(doc.last_observation === null
        ? "none stored yet"
        : "none in this window: the newest is from " + when(doc.last_observation));
    }
    if (!doc.forecast) {
      // the chart's forecast lines are just empty: say why
      parts.push("no forecast published yet");
    } else if (doc.stale) {
      parts.push("the forecast is stale (made " + when(doc.forecast.generated_at) +
        "): the publish job is not keeping up");
    }
    var warnings = parts.slice(volatile);
    return {
      text: parts.join(" · "),
      spoken: doc.series + ": " + (warnings.length ? warnings.join("; ") : "up to date"),
    };
  }

  // A window from a shared link that the menu does not offer becomes an option of its
  // own (the API says whether it is valid) instead of leaving the menu blank.
  function chooseWindow(value) {
    var select = el("window");
    var offered = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
    if (!offered) {
      var opt = document.createElement("option");
      opt.value = value;
      opt.textContent = value;
      select.appendChild(opt);
    }
    select.value = value;
  }

  // -- series menu -----------------------------------------------------------------------
  // The members of a split_by family are named family{label="value",...}: hundreds of
  // long names alike up to the menu's width. The menu groups a family's members under
  // its name and shows each by the labels that differ between them (the whole name is
  // the option's title, the menu's title and the chart's heading); with many series a
  // filter box narrows the menu.
  var FILTER_FROM = 20;
  var catalogue = [];

  function optionText(s, varying) {
    var keys = Object.keys(s.labels || {}).sort();
    if (!keys.length) return s.name + (s.unit ? " (" + s.unit + ")" : "");
    var shown = keys.filter(function (k) { return varying[k]; });
    return (shown.length ? shown : keys).map(function (k) { return k + "=" + s.labels[k]; }).join(" · ");
  }

  // per family: which label keys take more than one value among its members (a key
  // some members lack counts as differing)
  function varyingLabels(series) {
    var fams = {};
    series.forEach(function (s) {
      var f = fams[s.family] = fams[s.family] || { size: 0, keys: {} };
      f.size++;
      Object.keys(s.labels || {}).forEach(function (k) {
        var key = f.keys[k] = f.keys[k] || { count: 0, values: {} };
        key.count++;
        key.values[s.labels[k]] = true;
      });
    });
    var out = {};
    Object.keys(fams).forEach(function (name) {
      var f = fams[name];
      out[name] = {};
      Object.keys(f.keys).forEach(function (k) {
        out[name][k] = f.keys[k].count < f.size || Object.keys(f.keys[k].values).length > 1;
      });
    });
    return out;
  }

  function filterTerms() {
    return el("series-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function matches(s, terms) {
    var name = s.name.toLowerCase();
    return terms.every(function (t) { return name.indexOf(t) >= 0; });
  }

  // Fills the menu with the series matching the filter, plus the one shown (so the menu
  // never names a series other than the one on screen); keeps that one selected.
  function renderMenu() {
    var select = el("series");
    var current = select.value || select.dataset.current || "";
    var terms = filterTerms();
    var varying = varyingLabels(catalogue);
    var shown = catalogue.filter(function (s) { return s.name === current || matches(s, terms); });
    var families = {};
    shown.forEach(function (s) {
      if (!Object.keys(s.labels || {}).length) return;
      (families[s.family] = families[s.family] || []).push(s);
    });
    select.textContent = "";
    var groups = {};
    shown.forEach(function (s) {
      var opt = document.createElement("option");
      opt.value = s.name;
      opt.title = s.name;
      opt.textContent = optionText(s, varying[s.family] || {});
      var members = families[s.family];
      if (!members) { select.appendChild(opt); return; }
      if (!groups[s.family]) {
        var units = members.map(function (m) { return m.unit; }).filter(function (u, i, a) { return a.indexOf(u) === i; });
        var total = catalogue.filter(function (m) { return m.family === s.family; }).length;
        groups[s.family] = document.createElement("optgroup");
        groups[s.family].label = s.family + (units.length === 1 && units[0] ? " (" + units[0] + ")" : "") +
          " · " + total + " series";
        select.appendChild(groups[s.family]);
      }
      groups[s.family].appendChild(opt);
    });
    if (current) select.value = current;
    select.title = select.value;
    var box = el("series-filter-box");
    box.hidden = catalogue.length < FILTER_FROM && !terms.length;
    var hits = terms.length ? catalogue.filter(function (s) { return matches(s, terms); }).length : null;
    el("series-count").textContent = hits === null ? catalogue.length + " series"
      : hits ? hits + " of " + catalogue.length + " match" : "none of " + catalogue.length + " match";
  }

  function firstMatch() {
    var terms = filterTerms();
    var current = el("series").value;
    var hits = catalogue.filter(function (s) { return matches(s, terms); });
    if (!hits.length || hits.some(function (s) { return s.name === current; })) return null;
    return hits[0].name;
  }

  function start() {
    var wanted = params();
    if (wanted.get("window")) chooseWindow(wanted.get("window"));
    return getJSON("v1/series").then(function (series) {
      catalogue = series;
      var select = el("series");
      if (!series.length) {
        renderMenu();
        setStatus("no series yet: run the ingest job (forecaster ingest) first", true);
        return;
      }
      var pick = wanted.get("series");
      var withForecast = series.filter(function (s) { return s.champion; })[0];
      select.dataset.current = pick && series.some(function (s) { return s.name === pick; })
        ? pick : (withForecast || series[0]).name;
      select.textContent = "";
      renderMenu();
      return load();
    }).catch(function (err) {
      setStatus(err.message, true);
    });
  }

  // The minute refresh. An empty menu means the series list never loaded (the API was
  // unreachable or refused when the page opened, or the store had no series yet): ask
  // for it again instead of waiting for a reload of the page. Otherwise the list is
  // read again too, so series that appeared since (new split_by members) are offered;
  // the menu is rebuilt only when the list changed (not under an open menu each minute).
  // Both requests go out at once; the data's does not wait for the list.
  function refresh() {
    if (!el("series").options.length) return start();
    var list = getJSON("v1/series").then(function (series) {
      var names = function (list) { return list.map(function (s) { return s.name; }).join("\n"); };
      var current = el("series").value;
      var shown = catalogue.filter(function (s) { return s.name === current; })[0];
      // the series on screen stays offered even if the list no longer has it
      if (shown && !series.some(function (s) { return s.name === current; })) series = series.concat([shown]);
      if (names(series) !== names(catalogue)) {
        catalogue = series;
        renderMenu();
      }
    }, function () { /* load() reports the API's state */ });
    return Promise.all([list, load()]);
  }

  zoomable("chart", "plot");
  zoomable("error-chart", "errorPlot");
  el("series").addEventListener("change", function () {
    el("series").title = el("series").value;
    el("series").dataset.current = el("series").value;
    load();
  });
  el("series-filter").addEventListener("input", renderMenu);
  el("series-filter").addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter") return;
    ev.preventDefault();
    var name = firstMatch();
    if (!name) return;
    el("series").dataset.current = name;
    renderMenu();
    el("series").value = name;
    el("series").title = name;
    load();
  });
  el("window").addEventListener("change", load);
  el("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, el("token").value);
    el("token-form").hidden = true;
    start();
  });
  window.addEventListener("resize", function () {
    [[state.plot, "chart"], [state.errorPlot, "error-chart"],
      [state.replicaPlot, "replicas"]].forEach(function (p) {
      if (p[0]) p[0].setSize({ width: chartWidth(el(p[1])), height: chartHeight(p[1]) });
    });
  });
  state.reload = refresh;
  state.ready = start();
  state.timer = setInterval(refresh, REFRESH_MS);
})();
