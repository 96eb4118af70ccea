// The feature catalog of one SAE (llmjp_ckpt/site/catalog.py). Data arrive as scripts that call
// LLMJP_CATALOG / LLMJP_SHARD (file:// pages cannot fetch JSON); every string is put into the
// page with textContent, never as HTML.
(function () {
  "use strict";
  const PAGE = 200;
  const $ = (id) => document.getElementById(id);
  let cat = null, matches = [], shown = 0, current = null;
  const shards = {}, waiting = {};

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function num(v) { return v === null || v === undefined ? "–" : Number(v).toPrecision(4); }

  function filter() {
    const q = $("cat-q").value.trim(), lang = $("cat-lang").value, gran = $("cat-gran").value;
    const minf = parseFloat($("cat-freq").value || "0"), live = $("cat-live").checked;
    const t0 = performance.now();
    if (/^\d+$/.test(q)) {
      const id = parseInt(q, 10);
      matches = id < cat.rows.length ? [cat.rows[id]] : [];
    } else {
      const needle = q.toLowerCase();
      matches = cat.rows.filter((r) =>
        (!lang || r[1] === lang) && (!gran || r[2] === gran) && (r[3] || 0) >= minf &&
        (!live || (r[3] || 0) > 0) &&
        (!needle || r[5].some((t) => t.toLowerCase().includes(needle))));
    }
    window.__catalogSearchMs = performance.now() - t0;
    $("cat-results").replaceChildren();
    shown = 0;
    more();
  }

  function more() {
    const body = $("cat-results");
    const frag = document.createDocumentFragment();
    for (const r of matches.slice(shown, shown + PAGE)) {
      const tr = el("tr");
      tr.dataset.id = r[0];
      tr.append(el("td", r[0]), el("td", r[1] || "–"), el("td", r[2] || "–"), el("td", num(r[3])),
                el("td", num(r[4])), el("td", r[5].join(" · ")));
      tr.addEventListener("click", () => open(r[0]));
      frag.append(tr);
    }
    body.append(frag);
    shown = Math.min(matches.length, shown + PAGE);
    $("cat-count").textContent = matches.length + " of " + cat.rows.length + " features match" +
      (shown < matches.length ? " (first " + shown + " shown)" : "");
    $("cat-more").hidden = shown >= matches.length;
  }

  function loadShard(k, done) {
    if (shards[k]) return done(shards[k]);
    (waiting[k] = waiting[k] || []).push(done);
    if (waiting[k].length > 1) return;
    const s = document.createElement("script");
    s.src = $("cat").dataset.dir + "/ex_" + String(k).padStart(5, "0") + ".js";
    s.onerror = () => { $("cat-feature").replaceChildren(el("p", "examples missing: " + s.src)); };
    document.body.append(s);
  }

  function open(id) {
    current = id;
    const k = Math.floor(id / cat.shard);
    $("cat-feature").replaceChildren(el("p", "loading feature " + id + "…", "meta"));
    loadShard(k, (data) => { if (current === id) show(id, data[id - k * cat.shard]); });
  }

  function show(id, feat) {
    const r = cat.rows[id], box = $("cat-feature");
    box.replaceChildren(el("h3", "feature " + id),
      el("p", "language " + (r[1] || "–") + " · granularity " + (r[2] || "–") +
        " · frequency " + num(r[3]) + " · max " + num(r[4]), "meta"));
    if (!feat || !feat.examples.length) { box.append(el("p", "no examples (dead latent)")); return; }
    for (const [cutL, cutR, toks, acts] of feat.examples) {
      const d = el("div", null, "ex");
      if (cutL) d.append("…");
      toks.forEach((t, i) => {
        const a = acts[i] / cat.levels;
        const s = el("span", t === "\u25cc" ? "" : t, t === "\u25cc" ? "tok partial" : "tok");
        if (a > 0) s.style.background = "rgba(255,102,0," + a.toFixed(3) + ")";
        s.title = (a * feat.scale).toFixed(3);
        d.append(s);
      });
      if (cutR) d.append("…");
      box.append(d);
    }
  }

  window.LLMJP_CATALOG = function (data) {
    cat = data;
    for (const id of ["cat-q", "cat-lang", "cat-gran", "cat-freq", "cat-live"])
      $(id).addEventListener("input", filter);
    $("cat-more").addEventListener("click", more);
    const q = new URLSearchParams(location.search).get("q");
    if (q) $("cat-q").value = q;
    filter();
    window.__catalogReady = true;
  };
  window.LLMJP_SHARD = function (k, data) {
    shards[k] = data;
    for (const f of waiting[k] || []) f(data);
    delete waiting[k];
  };
  window.LLMJP_open = open;
})();
