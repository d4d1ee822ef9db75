/* auralis-batch HTML report: sorts the library table and draws the plots with
 * Vega-Lite (through vega-embed, with Vega's expression interpreter: the page's
 * Content-Security-Policy grants no eval). A track's plots are drawn when its section
 * opens, from the JSON in the section; the library plot from the page's JSON. */
(function () {
  "use strict";
  const doc = document;
  const pageEl = doc.getElementById("ab-page");
  const page = pageEl ? JSON.parse(pageEl.textContent) : {};
  const embed = window.vegaEmbed;

  /* ------------------------------------------------------------ sorting */
  const RANK = { failed: 0, interrupted: 1, "not started": 2, skipped: 3, planned: 4, ok: 5 };
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function cellKey(td, type) {
    const s = td ? td.textContent : "";
    if (s === "") return null;
    if (type === "n") {
      const v = Number(s);
      return Number.isNaN(v) ? null : v;
    }
    if (type === "s") return s in RANK ? RANK[s] : 9;
    return s;
  }

  function sortTable(table, th) {
    const ths = Array.from(table.tHead.rows[0].cells);
    const col = ths.indexOf(th);
    const type = th.getAttribute("data-t") || "t";
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    ths.forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows, (tr, i) => ({ tr, i, k: cellKey(tr.cells[col], type) }));
    const cmp = type === "t" ? (a, b) => collator.compare(a, b) : (a, b) => a - b;
    rows.sort((a, b) => {
      if (a.k === null || b.k === null) {  // empty cells last, whichever the direction
        return a.k === b.k ? a.i - b.i : a.k === null ? 1 : -1;
      }
      return dir * cmp(a.k, b.k) || a.i - b.i;
    });
    const frag = doc.createDocumentFragment();
    rows.forEach((r) => frag.appendChild(r.tr));
    body.appendChild(frag);
  }

  doc.querySelectorAll("table.tracks").forEach((table) => {
    Array.from(table.tHead.rows[0].cells).forEach((th) => {
      const button = doc.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      button.title = "sort by " + th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", () => sortTable(table, th));
    });
  });

  /* ------------------------------------------------------------ opening a track */
  function openTrack(id) {
    const det = doc.getElementById(id);
    if (det && det.tagName === "DETAILS") {
      det.open = true;
      det.scrollIntoView({ block: "start" });
    }
  }
  function openFromHash() {
    if (location.hash.length > 1) openTrack(decodeURIComponent(location.hash.slice(1)));
  }
  window.addEventListener("hashchange", openFromHash);

  /* ------------------------------------------------------------ plots */
  // A series is a list, or {s, d}: integers value * s as differences (html_report.pack_series).
  function unpack(p) {
    if (!p || Array.isArray(p)) return p;
    let acc = 0;
    return p.d.map((x) => (x === null ? null : (acc += x) / p.s));
  }
  window.abUnpack = unpack;

  const COLORS = {
    before: "#9a9aa0", after: "#1f6fb4", target: "#d62728", source: "#9a9aa0",
    master: "#1f6fb4", reference: "#e07b00", compressor: "#7b52ab", limiter: "#d62728",
  };
  const CONFIG = {
    view: { stroke: null },
    font: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    axis: { labelFontSize: 11, titleFontSize: 11, titleFontWeight: "normal", gridColor: "#ececf0" },
    legend: { orient: "top", title: null, labelFontSize: 11, symbolSize: 60 },
    title: { fontSize: 13, anchor: "start", fontWeight: 600, offset: 4 },
  };
  const OPTIONS = {
    renderer: "svg",
    ast: true,  // Vega's interpreter instead of generated code: no eval
    actions: { export: true, source: false, compiled: false, editor: false },
  };
  const W = 420;
  const H = 170;
  const OCTAVES = [31.5, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000];

  function colour(keys) {
    return {
      field: "k", type: "nominal", title: null,
      scale: { domain: keys, range: keys.map((k) => COLORS[k]) },
    };
  }

  function timeRows(d, named) {
    const rows = [];
    for (const [k, key] of named) {
      const values = unpack(d[key]);
      if (!Array.isArray(values)) continue;
      values.forEach((v, i) => rows.push({ k, t: Math.round(i * d.hop * 1000) / 1000, v }));
    }
    return rows;
  }

  const TIME = { field: "t", type: "quantitative", title: "time, s" };

  function shortTermSpec(d) {
    const rows = timeRows(d, [["before", "short_term_before"], ["after", "short_term_after"]]);
    const keys = d.target == null ? ["before", "after"] : ["before", "after", "target"];
    const y = { field: "v", type: "quantitative", title: "loudness of each step (400 ms blocks), LUFS",
      scale: { zero: false } };
    const layer = [{
      mark: { type: "line", strokeWidth: 1.5, point: { size: 24, opacity: 0 } },
      encoding: {
        x: TIME, y, color: colour(keys),
        tooltip: [{ field: "k", title: "line" }, { field: "t", title: "time, s" },
          { field: "v", title: "LUFS" }],
      },
    }];
    if (d.target != null) {
      layer.push({
        data: { values: [{ k: "target", v: d.target }] },
        mark: { type: "rule", strokeDash: [5, 3] },
        encoding: { y: { field: "v", type: "quantitative" }, color: colour(keys),
          tooltip: [{ field: "v", title: "target, LUFS" }] },
      });
    }
    return { title: "Loudness over time", width: W, height: H, data: { values: rows }, layer };
  }

  function gainReductionSpec(d) {
    const rows = timeRows(d, [["compressor", "compressor_gr_db"], ["limiter", "limiter_gr_db"]]);
    return {
      title: "Gain reduction", width: W, height: H, data: { values: rows },
      mark: { type: "line", strokeWidth: 1.5, interpolate: "step-after",
        point: { size: 24, opacity: 0 } },
      encoding: {
        x: TIME,
        // reduction hangs down from 0 dB, as on a meter
        y: { field: "v", type: "quantitative", title: "gain reduction, dB",
          scale: { reverse: true, zero: true, padding: 4 } },
        color: colour(["compressor", "limiter"]),
        tooltip: [{ field: "k", title: "line" }, { field: "t", title: "time, s" },
          { field: "v", title: "dB" }],
      },
    };
  }

  function frequencyAxis(lo, hi) {
    return { field: "f", type: "quantitative", title: "frequency, Hz",
      scale: { type: "log", domain: [lo, hi], nice: false },
      axis: { values: OCTAVES.filter((f) => f >= lo && f <= hi), format: "~s", grid: true } };
  }

  function spectrumSpec(d) {
    const s = d.spectrum;
    const hz = s.freqs_hz || page.spec_hz || [];
    const keys = [];
    const rows = [];
    for (const [k, key] of [["source", "source_db"], ["master", "master_db"],
      ["reference", "reference_db"]]) {
      const values = unpack(s[key]);
      if (!Array.isArray(values)) continue;
      keys.push(k);
      values.forEach((v, i) => rows.push({ k, f: hz[i], v }));
    }
    return {
      title: "Long-term spectrum, third octaves", width: W, height: H, data: { values: rows },
      mark: { type: "line", strokeWidth: 1.5, point: { size: 16, filled: true } },
      encoding: {
        x: frequencyAxis(hz[0], hz[hz.length - 1]),
        y: { field: "v", type: "quantitative", title: "level, dB", scale: { zero: false } },
        color: colour(keys),
        strokeDash: { condition: { test: "datum.k === 'reference'", value: [4, 3] },
          value: [1, 0] },
        tooltip: [{ field: "k", title: "line" }, { field: "f", title: "Hz" }, { field: "v", title: "dB" }],
      },
    };
  }

  function eqSpec(d) {
    const curve = unpack((page.eq || [])[d.eq]);
    if (!curve) return null;
    const rows = [];
    curve.forEach((v, i) => { if (v !== null) rows.push({ f: page.eq_hz[i], v }); });
    const values = rows.map((r) => r.v);
    // The axis holds the whole curve above 40 Hz down to -40 dB (a matching EQ's -38 dB
    // band was drawn flat at a -18 dB floor: a newcomer's); the high-pass's fall below
    // 40 Hz and a low-pass's beyond -40 dB are clamped (a +2 dB peak stays readable).
    const audible = rows.filter((r) => r.f >= 40).map((r) => r.v);
    const deepest = Math.floor(Math.min(...(audible.length ? audible : values)));
    const lo = Math.max(Math.min(-3, deepest), -40);
    const hi = Math.max(3, Math.ceil(Math.max(...values)));
    return {
      title: "EQ curve of the preset", width: W, height: H,
      layer: [
        { data: { values: [{ v: 0 }] }, mark: { type: "rule", color: "#bbb" },
          encoding: { y: { field: "v", type: "quantitative" } } },
        { data: { values: rows }, mark: { type: "line", strokeWidth: 1.8, color: COLORS.after },
          encoding: {
            x: frequencyAxis(20, rows[rows.length - 1].f),
            y: { field: "v", type: "quantitative", title: "gain, dB",
              scale: { domain: [lo, hi], clamp: true } },
            tooltip: [{ field: "f", title: "Hz" }, { field: "v", title: "dB" }],
          } },
      ],
    };
  }

  let tracksData = null;
  function trackData() {  // parsed once, when the first section opens
    if (tracksData === null) {
      const el = doc.getElementById("ab-tracks");
      tracksData = el ? JSON.parse(el.textContent) : {};
    }
    return tracksData;
  }

  const SPECS = { st: shortTermSpec, gr: gainReductionSpec, sp: spectrumSpec, eq: eqSpec };

  function noData(fig, text) {
    fig.className = "nodata";
    fig.textContent = text;
  }

  function draw(fig, spec, options) {
    return embed(fig, Object.assign({ config: CONFIG }, spec), Object.assign({}, OPTIONS, options))
      .then((result) => {
        fig.setAttribute("data-ready", "1");
        return result;
      })
      .catch((err) => {
        noData(fig, "plot failed: " + err.message);
        console.error(err);
      });
  }

  function drawTrack(det) {
    if (det.hasAttribute("data-drawn")) return;
    det.setAttribute("data-drawn", "1");
    // With scripting on, <noscript> holds the body's markup as text: build it now.
    const ns = det.querySelector(":scope > noscript");
    if (ns) {
      const tpl = doc.createElement("template");
      tpl.innerHTML = ns.textContent;
      ns.replaceWith(tpl.content);
    }
    const figs = det.querySelectorAll("figure.plot");
    if (!embed) {
      figs.forEach((fig) => noData(fig, "plot: the plotting library did not load"));
      return;
    }
    const d = trackData()[det.id];
    figs.forEach((fig) => {
      const spec = SPECS[fig.getAttribute("data-k")](d);
      if (spec) draw(fig, spec);
      else noData(fig, "no data");
    });
  }

  doc.addEventListener("toggle", (ev) => {
    const det = ev.target;
    if (det.tagName === "DETAILS" && det.open && det.classList.contains("track")) drawTrack(det);
  }, true);

  function overviewSpec(rows) {
    const wide = rows.slice().sort((a, b) => a[2] - b[2])
      .map((r, n) => ({ i: n + 1, id: "t" + r[0], n: r[1], b: r[2], a: r[3], t: r[4] }));
    const long = [];
    for (const w of wide) {
      long.push(Object.assign({ k: "before", v: w.b }, w));
      long.push(Object.assign({ k: "after", v: w.a }, w));
      if (w.t !== null) long.push(Object.assign({ k: "target", v: w.t }, w));
    }
    const keys = ["before", "after", "target"];
    const x = { field: "i", type: "quantitative", title: "tracks, quietest source first",
      scale: { domain: [0, wide.length + 1], nice: false },
      axis: { tickMinStep: 1, format: "d", tickCount: Math.min(10, wide.length + 1) } };
    const y = { field: "v", type: "quantitative", title: "integrated loudness, LUFS",
      scale: { zero: false, padding: 8 } };
    const tooltip = [{ field: "n", title: "track" }, { field: "b", title: "before, LUFS" },
      { field: "a", title: "after, LUFS" }, { field: "t", title: "target, LUFS" }];
    const many = wide.length > 300;
    const oneTarget = wide.length > 0 && wide.every((w) => w.t !== null && w.t === wide[0].t);
    return {
      width: "container", height: 240, autosize: { type: "fit-x", contains: "padding" },
      encoding: { x, y, color: colour(keys), tooltip },
      layer: [
        { data: { values: wide }, mark: { type: "rule", color: "#c8c8cc" },
          encoding: { y: { field: "b", type: "quantitative" }, y2: { field: "a" },
            color: { value: "#c8c8cc" } } },
        oneTarget
          ? { data: { values: [{ k: "target", v: wide[0].t }] },
            mark: { type: "rule", strokeDash: [5, 3] },
            encoding: { x: null, tooltip: [{ field: "v", title: "target, LUFS" }] } }
          : { data: { values: long.filter((r) => r.k === "target") },
            mark: { type: "tick", orient: "horizontal", thickness: 2, size: many ? 5 : 12 } },
        { data: { values: long.filter((r) => r.k !== "target") },
          mark: { type: "point", filled: true, size: many ? 14 : 40, opacity: 0.9,
            cursor: "pointer" } },
      ],
    };
  }

  function drawOverview() {
    const overview = doc.getElementById("overview");
    if (!overview) return;
    if (!embed) {
      noData(overview, "plot: the plotting library did not load");
      return;
    }
    draw(overview, overviewSpec(page.overview || []), { renderer: "canvas" }).then((result) => {
      if (!result) return;
      result.view.addEventListener("click", (_, item) => {
        if (item && item.datum && item.datum.id) location.hash = item.datum.id;
      });
      window.abOverviewDrawnMs = performance.now();
    });
  }

  // The table first: the library plot is drawn once the page has loaded and painted.
  if (doc.readyState === "complete") setTimeout(drawOverview, 0);
  else window.addEventListener("load", () => setTimeout(drawOverview, 0));
  openFromHash();
})();
