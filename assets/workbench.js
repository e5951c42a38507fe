/*
 * 3Dmol viewers of the workbench (3Dmol.js is served from /assets/vendor, never a CDN).
 *
 * One viewer per host div, created once from a "view" (topology: loop beads + bonds, or a
 * protein's PDB text) and afterwards only given new coordinates: atom positions are written
 * in place and the model's geometry is rebuilt.
 *
 * Loops are a continuous backbone coloured blue -> red along the chain. A bond stretched beyond
 * view.stretch (twice its rest length) is taken out of the backbone and drawn as a thin grey
 * line in a second model, so a torn structure reads as torn instead of as straight coloured
 * lines across the view; wbStats[div].stretched counts them and a badge in the view says so.
 *
 * Camera: each view frames its own structure and follows it (re-fits on every frame) until the
 * user rotates, zooms or pans that view; "Fit view" frames it again and resumes following, for
 * that view only. Rotation stays linked across the views of a group (onViewChange passes on the
 * rotation, never the centre or zoom, so one card's Fit leaves the others' framing alone).
 *
 * Live coordinates stream outside Dash's callback machinery: a small fetch loop asks
 * /_wb/frames for the newest frame of each live run (owner or shared-link access is checked
 * by the server's registry) and draws on the next animation frame, always the newest
 * coordinates. Going through a Dash callback per frame costs more than the frame itself
 * (request, renderer bookkeeping, store update), which kept the views under 10 frames/s.
 * Curves and status lines still come from the Dash poll (poll_runs), a few times a second.
 *
 * window.wbStats[div] counts frames received and drawn (bench/bench_ui.py, browser test).
 *
 * Component ids come from the server, never from literals here: window.WB_IDS holds every
 * panel's ids ({page: {SESSION, ...}, live: {POLL, VIEW_PREFIX, ...}, ...}), written into
 * the page by workbench/layout.py (js_ids, index_string) from the panels' ID classes.
 */
(function () {
  "use strict";
  const ID = window.WB_IDS;
  const viewers = {};   // div id -> {el, viewer, model, atoms, key, linked}
  const views = {};     // div id -> last view payload (to rebuild a viewer whose div was replaced)
  const pending = {};   // div id -> {xyz, step}: newest coordinates not drawn yet
  const overlays = {};  // div id -> {key, pairs}: the GNN's strongest edges over that view
  const anim = {timer: null, div: null};
  window.wbStats = window.wbStats || {};

  // Antialiasing costs ~7x per frame on software WebGL (SwiftShader/llvmpipe: headless or
  // GPU-less machines), which would drop the live view below 10 frames/s; keep it on real GPUs.
  let softwareGL = null;
  function isSoftwareGL() {
    if (softwareGL !== null) return softwareGL;
    try {
      const gl = document.createElement("canvas").getContext("webgl");
      const ext = gl && gl.getExtension("WEBGL_debug_renderer_info");
      const name = ext ? String(gl.getParameter(ext.UNMASKED_RENDERER_WEBGL)) : "";
      softwareGL = /swiftshader|llvmpipe|software/i.test(name);
      const lose = gl && gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();  // browsers cap live WebGL contexts (16 in Chromium)
    } catch (e) { softwareGL = true; }
    return softwareGL;
  }

  // Viewers whose div left the page (a new side-by-side group replaced the cards) give
  // their WebGL context back.
  function disposeDetached() {
    for (const [div, entry] of Object.entries(viewers)) {
      if (document.body.contains(entry.el)) continue;
      try {
        const canvas = entry.el.querySelector("canvas");
        const gl = canvas && (canvas.getContext("webgl2") || canvas.getContext("webgl"));
        const lose = gl && gl.getExtension("WEBGL_lose_context");
        if (lose) lose.loseContext();
      } catch (e) { /* already gone */ }
      delete viewers[div];
    }
  }

  const STRETCHED_COLOR = 0x9aa0a6;
  const SOFTWARE_BEADS_MAX = 800;  // beads drawn up to this many on software WebGL (the opening demo: 600)

  // Bonds as sticks (cylinder impostors) on a real GPU; as lines on software WebGL, where
  // rasterizing the cylinders made up most of a frame's cost (about half of the ~100 ms a
  // two-view frame took on a loaded 2-core machine).
  function bondStyle() { return isSoftwareGL() ? "line" : "stick"; }

  function chainColor(i, n) {
    // blue -> red along the chain, so folding of the loop is readable
    const t = n > 1 ? i / (n - 1) : 0;
    const r = Math.round(40 + 200 * t), g = Math.round(90 + 80 * Math.sin(Math.PI * t)), b = Math.round(230 - 190 * t);
    return (r << 16) | (g << 8) | b;
  }

  function build(div, view) {
    const el = document.getElementById(div);
    if (!el || typeof $3Dmol === "undefined") return null;
    const old = viewers[div];
    if (old && old.el === el && old.key === view.key) return old;
    if (old) { try { old.viewer.clear(); } catch (e) { /* its canvas is already gone */ } }
    disposeDetached();
    el.innerHTML = "";
    // rows/cols/row/col make 3Dmol draw into this canvas's own WebGL context instead of its
    // shared offscreen one, which is resized and copied back on every render: a main-thread
    // stall per frame (~20-40 ms for two views on software WebGL, 3-4 ms with own contexts).
    const viewer = $3Dmol.createViewer(el, {backgroundColor: "white", antialias: !isSoftwareGL(),
                                            rows: 1, cols: 1, row: 0, col: 0});
    let model, beads = true;
    if (view.kind === "protein") {
      model = viewer.addModel(view.pdb, "pdb");
      if (view.coarse) {  // one bead per residue: a CA trace with beads
        const beads = {prop: "resi", gradient: "roygb", min: 1, max: Math.max(2, view.n)};
        model.setStyle({}, {cartoon: {color: "spectrum", style: "trace", thickness: 0.4},
                            sphere: {radius: 0.8, colorscheme: beads}});
      } else {
        model.setStyle({}, {cartoon: {color: "spectrum"}, [bondStyle()]: {radius: 0.12}});
      }
      if (view.native) {  // a folding run: its native structure, translucent, superposed on x0
        viewer.addModel(view.native, "pdb").setStyle({}, {cartoon: {color: "grey", opacity: 0.35}});
      }
    } else {
      const n = view.n, x = view.x0, atoms = [];
      for (let i = 0; i < n; i++) {
        atoms.push({elem: "C", x: x[3 * i], y: x[3 * i + 1], z: x[3 * i + 2], index: i, serial: i,
                    bonds: [], bondOrder: [], color: chainColor(i, n)});
      }
      const b = view.bonds;
      for (let k = 0; k + 1 < b.length; k += 2) {
        atoms[b[k]].bonds.push(b[k + 1]); atoms[b[k]].bondOrder.push(1);
        atoms[b[k + 1]].bonds.push(b[k]); atoms[b[k + 1]].bondOrder.push(1);
      }
      model = viewer.addModel();
      model.addAtoms(atoms);
      // a backbone tube with small beads, both coloured along the chain; on software WebGL a
      // long loop is its backbone line alone (rebuilding the beads' meshes each frame cost
      // more than the line; docs/benchmarks-ui.md)
      beads = !(isSoftwareGL() && n > SOFTWARE_BEADS_MAX);
      model.setStyle({}, beads ? {sphere: {radius: 0.2}, [bondStyle()]: {radius: 0.17}}
                               : {[bondStyle()]: {radius: 0.17}});
    }
    const entry = {div: div, el: el, viewer: viewer, model: model, atoms: model.selectedAtoms({}),
                   key: view.key, linked: new Set(), fresh: true, follow: true, programmatic: 0,
                   camera: null, ghost: null, bonds: null, stretch: 0, broken: ""};
    if (view.kind !== "protein" && view.bonds && view.stretch !== 0) setupStretch(entry, view);
    const overlay = overlays[div];
    if (overlay && overlay.key === entry.key) setEdges(entry, overlay.pairs);
    const notes = [];  // what the view leaves out, said on it
    if (view.every > 1) {  // a large loop: every k-th bead is drawn (workbench/jobs.py)
      notes.push("every " + view.every + "th bead of " + view.n_atoms + " shown");
    }
    if (!beads) notes.push("backbone line only: beads off above " + SOFTWARE_BEADS_MAX + " without a GPU");
    if (notes.length) {
      const note = document.createElement("div");
      note.className = ID.live.BADGE_CLASS;
      note.textContent = notes.join(" · ");
      entry.el.appendChild(note);
    }
    viewer.setViewChangeCallback(v => onViewChange(entry, v));
    programmatic(entry, () => frameAndRender(viewer));
    viewers[div] = entry;
    return entry;
  }

  // Run fn with the view's own camera changes marked as not the user's (no unfollow, no link).
  // zoomTo() ends with a draw of its own (3Dmol's show) of the geometry as it was; frame the
  // structure with that draw suppressed, then render() once: one draw per frame, with the new
  // geometry and the new framing together.
  function frameAndRender(viewer) {
    const own = Object.prototype.hasOwnProperty.call(viewer, "show");
    const show = viewer.show;
    viewer.show = function () {};
    try { viewer.zoomTo(); } finally { if (own) viewer.show = show; else delete viewer.show; }
    viewer.render();
  }

  function programmatic(entry, fn) {
    entry.programmatic += 1;
    try { fn(); } finally { entry.programmatic -= 1; }
    entry.camera = entry.viewer.getView();
  }

  /* Stretched bonds: a second model holds two atoms per bond, drawn as a thin grey line; an
     intact bond's pair sits on one point (nothing drawn), a stretched one spans the gap while
     its backbone bond is removed from the main model. */
  function setupStretch(entry, view) {
    const b = view.bonds, n = b.length >> 1, ghosts = [];
    for (let k = 0; k < n; k++) {
      for (let e = 0; e < 2; e++) {
        ghosts.push({elem: "H", x: 0, y: 0, z: 0, index: 2 * k + e, serial: 2 * k + e,
                     bonds: [2 * k + 1 - e], bondOrder: [1], color: STRETCHED_COLOR});
      }
    }
    const ghost = entry.viewer.addModel();
    ghost.addAtoms(ghosts);
    ghost.setStyle({}, {line: {color: STRETCHED_COLOR, opacity: 0.6}});
    entry.ghost = ghost;
    entry.ghostAtoms = ghost.selectedAtoms({});
    entry.bonds = b;
    entry.stretch = view.stretch || 2 * (view.scale || 1);  // twice the rest length 1
    const badge = document.createElement("div");
    badge.className = ID.live.BADGE_CLASS;
    badge.style.display = "none";
    entry.el.appendChild(badge);
    entry.badge = badge;
  }

  function updateStretch(entry) {
    const atoms = entry.atoms, b = entry.bonds, g = entry.ghostAtoms, lim2 = entry.stretch ** 2;
    const broken = [];
    for (let k = 0; k + 1 < b.length; k += 2) {
      const p = atoms[b[k]], q = atoms[b[k + 1]], a = g[k], c = g[k + 1];
      const d2 = (p.x - q.x) ** 2 + (p.y - q.y) ** 2 + (p.z - q.z) ** 2;
      const torn = !(d2 <= lim2);
      if (torn) broken.push(k >> 1);
      a.x = p.x; a.y = p.y; a.z = p.z;
      c.x = torn ? q.x : p.x; c.y = torn ? q.y : p.y; c.z = torn ? q.z : p.z;
    }
    const key = broken.join(",");
    if (key !== entry.broken) {  // rebuild the backbone's bond lists only when the set changes
      entry.broken = key;
      const torn = new Set(broken);
      for (const atom of atoms) { atom.bonds = []; atom.bondOrder = []; }
      for (let k = 0; k + 1 < b.length; k += 2) {
        if (torn.has(k >> 1)) continue;
        atoms[b[k]].bonds.push(b[k + 1]); atoms[b[k]].bondOrder.push(1);
        atoms[b[k + 1]].bonds.push(b[k]); atoms[b[k + 1]].bondOrder.push(1);
      }
      entry.badge.textContent = broken.length ? broken.length + " stretched bond" +
        (broken.length > 1 ? "s" : "") + " (> 2× rest length, grey)" : "";
      entry.badge.style.display = broken.length ? "block" : "none";
    }
    entry.ghost.molObj = null;
    stat(entry.div).stretched = broken.length;
  }

  /* Graph overlay (teaching views, issue 12): the GNN's strongest propagation edges as thin
     red lines over a run's view, a model of two atoms per edge that follows the beads. */
  const EDGE_COLOR = 0xd62728;
  function setEdges(entry, pairs) {
    if (entry.edges) { entry.viewer.removeModel(entry.edges); entry.edges = null; }
    const n = pairs ? pairs.length >> 1 : 0;
    stat(entry.div).edges = n;
    if (!n) return;
    const ends = [];
    for (let k = 0; k < 2 * n; k++) {
      ends.push({elem: "H", x: 0, y: 0, z: 0, index: k, serial: k, bonds: [k ^ 1], bondOrder: [1],
                 color: EDGE_COLOR});
    }
    entry.edges = entry.viewer.addModel();
    entry.edges.addAtoms(ends);
    entry.edges.setStyle({}, {line: {color: EDGE_COLOR, opacity: 0.7}});
    entry.edgeAtoms = entry.edges.selectedAtoms({});
    entry.edgePairs = pairs;
    updateEdges(entry);
  }

  function updateEdges(entry) {
    const atoms = entry.atoms, p = entry.edgePairs, e = entry.edgeAtoms;
    for (let k = 0; k < p.length; k++) {
      const a = atoms[p[k]];
      if (a) { e[k].x = a.x; e[k].y = a.y; e[k].z = a.z; }
    }
    entry.edges.molObj = null;
  }

  /* Dash clientside callback: overlay = {targets: [{div, key}], pairs: [i0, j0, i1, j1, ...]}
     (bead indices as the views draw them). Every earlier overlay goes; the views listed get
     the edges now and again whenever they are rebuilt under the same key. */
  function edges(overlay) {
    for (const div of Object.keys(overlays)) {
      delete overlays[div];
      const entry = viewers[div];
      if (entry && entry.edges) { setEdges(entry, null); entry.viewer.render(); }
    }
    for (const t of (overlay && overlay.targets) || []) {
      overlays[t.div] = {key: t.key, pairs: overlay.pairs};
      const entry = viewers[t.div];
      if (entry && entry.key === t.key) { setEdges(entry, overlay.pairs); entry.viewer.render(); }
    }
    return window.dash_clientside.no_update;
  }

  // Cameras are linked here rather than with 3Dmol's linkViewer: that one re-renders every
  // linked viewer whenever any of them renders, so each new frame of one run also redrew the
  // other views (half the draw rate on software WebGL), and it shares the whole camera. 3Dmol
  // calls this after every render; a change the code made itself (programmatic: follow, Fit)
  // stays in its view; a change by the user (mouse, wheel) stops this view following its
  // structure and passes the rotation (getView()[4..7], a quaternion) on to the linked views.
  function onViewChange(entry, view) {
    stat(entry.div).renders += 1;
    if (entry.programmatic || sameView(view, entry.camera)) return;
    entry.camera = view.slice();
    entry.follow = false;
    stat(entry.div).follow = false;
    for (const other of [...entry.linked]) {
      if (viewers[other.div] !== other) { entry.linked.delete(other); continue; }  // rebuilt since
      const v = other.viewer.getView();
      if (sameView(v.slice(4), view.slice(4))) continue;
      for (let i = 4; i < 8; i++) v[i] = view[i];
      programmatic(other, () => other.viewer.setView(v, true));  // setView draws it
    }
  }

  function sameView(a, b) {
    return a && b && a.length === b.length && a.every((v, i) => v === b[i]);
  }

  function setCoords(entry, xyz) {
    const atoms = entry.atoms, n = Math.min(atoms.length, xyz.length / 3);
    for (let i = 0; i < n; i++) {
      atoms[i].x = xyz[3 * i]; atoms[i].y = xyz[3 * i + 1]; atoms[i].z = xyz[3 * i + 2];
    }
    entry.model.molObj = null;  // rebuild geometry from the moved atoms
    if (entry.ghost) updateStretch(entry);
    if (entry.edges) updateEdges(entry);
    if (entry.follow) {  // frame the structure as it grows or shrinks
      programmatic(entry, () => frameAndRender(entry.viewer));
    } else {
      entry.viewer.render();
    }
  }

  function link(divs, self) {
    const live = (divs || []).map(d => viewers[d]).filter(Boolean);
    for (const a of live) for (const b of live) if (a !== b) a.linked.add(b);
    // a viewer joining the group takes the rotation of one already there (not its framing)
    const me = viewers[self], other = live.find(e => e !== me);
    if (me && other) {
      const v = me.viewer.getView(), o = other.viewer.getView();
      for (let i = 4; i < 8; i++) v[i] = o[i];
      programmatic(me, () => me.viewer.setView(v, true));  // setView draws it
    }
  }

  function stat(div) {
    return window.wbStats[div] || (window.wbStats[div] = {frames: 0, recv: 0, first: null, last: null,
                                                           step: null, draw_ms: 0, renders: 0,
                                                           stretched: 0, follow: true});
  }

  function draw(div, xyz, step) {
    const view = views[div];
    if (!view) return false;
    const t0 = performance.now();
    const entry = build(div, view);
    if (!entry) return false;
    if (xyz) setCoords(entry, xyz);
    else if (entry.fresh && entry.ghost) { updateStretch(entry); entry.viewer.render(); }
    entry.fresh = false;
    const s = stat(div), now = performance.now();
    s.frames += 1; s.first = s.first === null ? now : s.first; s.last = now; s.step = step;
    s.draw_ms += now - t0;
    return true;
  }

  let drawScheduled = false;
  function scheduleDraw() {
    if (drawScheduled) return;
    drawScheduled = true;
    requestAnimationFrame(function () {
      drawScheduled = false;
      for (const div of Object.keys(pending)) {
        const p = pending[div];
        delete pending[div];
        draw(div, p.xyz, p.step);
      }
    });
  }

  /* ---- live frame stream ------------------------------------------------------------ */
  // The fetch loop runs in a Web Worker (made from a Blob of the function below, so no extra
  // asset is loaded): drawing on software WebGL can hold the page's main thread for tens of
  // milliseconds, and a loop there would stall behind it. The worker keeps fetching; the
  // page draws the newest coordinates on each animation frame and drops the older ones.
  function streamWorker() {
    const runs = {};  // div -> {run, since, done}
    let looping = false, period = 50, session = "", origin = "";  // one loop, never two
    // a failed fetch (server busy or restarting) waits period * 2^failures, at most MAX_WAIT
    const MAX_WAIT = 5000;
    let failures = 0;
    const stats = {fetches: 0, fetch_ms: 0, failures: 0, reconnecting: false, wait_ms: 0};
    function pump() {
      const active = Object.entries(runs).filter(([, r]) => !r.done);
      if (!active.length) { looping = false; return; }
      const t0 = performance.now();
      const query = active.map(([, r]) => r.run + ":" + r.since).join(",");
      let wait = period;
      fetch(origin + "/_wb/frames?runs=" + encodeURIComponent(query), {headers: {"X-WB-Session": session}})
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (reply) {
          failures = 0;
          stats.reconnecting = false;
          stats.wait_ms = 0;
          stats.fetches += 1;
          stats.fetch_ms += performance.now() - t0;
          const frames = [];
          for (const [div, r] of active) {
            const f = reply[r.run];
            if (!f) continue;
            if (f.gone) { r.done = true; continue; }
            if (f.xyz) { r.since = f.frame; frames.push({div: div, xyz: f.xyz, step: f.step}); }
            if (f.terminal && r.since >= f.frame) r.done = true;
          }
          postMessage({frames: frames, stats: stats});
        })
        .catch(function () {
          failures += 1;
          stats.failures += 1;
          stats.reconnecting = true;
          wait = Math.min(MAX_WAIT, period * Math.pow(2, failures));
          stats.wait_ms = wait;
          postMessage({frames: [], stats: stats, divs: active.map(([div]) => div)});
        })
        .finally(function () { setTimeout(pump, Math.max(0, wait - (performance.now() - t0))); });
    }
    onmessage = function (e) {
      const m = e.data;
      if (m.type === "track") {
        runs[m.div] = {run: m.run, since: m.since || 0, done: false};
        period = m.period || period; session = m.session || ""; origin = m.origin;
        if (!looping) { looping = true; setTimeout(pump, 0); }
      } else if (m.type === "untrack") {
        delete runs[m.div];
      }
    };
  }

  let worker = null;
  // round trips of the stream (bench/bench_ui.py); failures and reconnecting (backoff) too
  window.wbStream = {fetches: 0, fetch_ms: 0, failures: 0, reconnecting: false, wait_ms: 0};
  const tracked = new Set();  // divs whose runs the stream follows

  // "reconnecting…" over each live view while the frame stream backs off
  function showReconnecting(on, wait) {
    for (const div of tracked) {
      const el = document.getElementById(div);
      if (!el) { tracked.delete(div); continue; }
      let tag = el.querySelector("." + ID.live.RECONNECT_CLASS);
      if (!tag && on) {
        tag = document.createElement("div");
        tag.className = ID.live.RECONNECT_CLASS;
        el.appendChild(tag);
      }
      if (tag) {
        tag.textContent = on ? "reconnecting… (next try in " + (wait / 1000).toFixed(1) + " s)" : "";
        tag.style.display = on ? "block" : "none";
      }
    }
  }

  function session() {
    try { return JSON.parse(window.sessionStorage.getItem(ID.page.SESSION)); } catch (e) { return null; }
  }

  function track(div, run, since, period) {
    if (worker === null) {
      const src = "(" + streamWorker.toString() + ")();";
      worker = new Worker(URL.createObjectURL(new Blob([src], {type: "text/javascript"})));
      worker.onmessage = function (e) {
        const st = e.data.stats, was = window.wbStream.reconnecting;
        Object.assign(window.wbStream, st);
        if (st.reconnecting || was) showReconnecting(st.reconnecting, st.wait_ms);
        for (const f of e.data.frames) {
          if (!document.getElementById(f.div)) { worker.postMessage({type: "untrack", div: f.div}); continue; }
          pending[f.div] = {xyz: f.xyz, step: f.step};
          stat(f.div).recv += 1;
        }
        scheduleDraw();
      };
    }
    tracked.add(div);
    worker.postMessage({type: "track", div: div, run: run, since: since, period: period,
                        session: session() || "", origin: window.location.origin});
  }

  /* Dash clientside callback: frame = {div, key, view?, xyz, step, link?, run?, since?, period?}.
     The first payload of a live run carries its topology and starts its stream; replay
     frames are drawn directly. */
  function frame(f) {
    if (!f || !f.div) return window.dash_clientside.no_update;
    if (f.view) views[f.div] = Object.assign({key: f.key, stretch: f.stretch}, f.view);
    if (anim.div === f.div) stopAnim();
    if (!draw(f.div, f.xyz, f.step)) return window.dash_clientside.no_update;
    if (f.link) link(f.link, f.div);
    if (f.run) track(f.div, f.run, f.since, f.period);
    return f.step;
  }

  /* "Fit view" button of a run card: frame this view's structure and follow it again. Only
     this view: the change is programmatic, so onViewChange passes nothing on. */
  function fit(n) {
    const trig = (window.dash_clientside.callback_context.triggered || [])[0];
    if (!trig) return window.dash_clientside.no_update;
    const id = JSON.parse(trig.prop_id.slice(0, trig.prop_id.lastIndexOf(".")));
    const entry = viewers[ID.live.VIEW_PREFIX + id.index];
    if (entry) {
      entry.follow = true;
      stat(entry.div).follow = true;
      programmatic(entry, () => frameAndRender(entry.viewer));
    }
    return n;
  }

  function stopAnim() {
    if (anim.timer !== null) cancelAnimationFrame(anim.timer);
    anim.timer = null; anim.div = null;
  }

  /* Mode animation: x(t) = base + amp * sin(phase) * disp. The phase advances with the
     screen refresh only: the animation has no physical timescale. */
  function animate(payload, amp) {
    stopAnim();
    if (!payload || !payload.div) return window.dash_clientside.no_update;
    views[payload.div] = Object.assign({key: payload.key}, payload.view);
    const entry = build(payload.div, views[payload.div]);
    if (!entry) return window.dash_clientside.no_update;
    const base = payload.base, disp = payload.disp, a = Number(amp || 0), xyz = new Array(base.length);
    if (!disp) { setCoords(entry, base); return payload.mode; }
    anim.div = payload.div;
    const t0 = performance.now();
    const tick = function (now) {
      const s = a * Math.sin((now - t0) / 1000 * 2 * Math.PI * 0.6);
      for (let i = 0; i < base.length; i++) xyz[i] = base[i] + s * disp[i];
      draw(payload.div, xyz, payload.mode);
      anim.timer = requestAnimationFrame(tick);
    };
    anim.timer = requestAnimationFrame(tick);
    return payload.mode;
  }

  /* Poll chain for curves and status lines: each reply of poll_runs (a new "seen") schedules
     exactly one next poll, at most every seen._ms ms. The next tick is set with set_props from
     a timer: a callback output would form a cycle (seen -> tick -> poll -> seen) that Dash
     refuses to follow.

     Duplicated curve points (issue 9: 1,609 points for 324 rows under load) came from two
     chains running at once: every "seen" update scheduled a tick, also when one was already
     pending (Run pressed while a group was polling: start_run's seen and the old chain's
     reply each scheduled one), and the watchdog started a second chain whenever a reply took
     over 10 s, which a loaded 2-core server did; two polls then went out with the same
     counters and both replies extended the curves. Now at most one tick is pending or in
     flight, a reply only continues the chain while its tick is the newest, and the watchdog
     restarts a chain only after 60 s without a reply. The server also assigns whole traces
     (figures.curves_patch), so a reply applied twice or late cannot add a point anyway. */
  const chain = {last: 0, inflight: false, timer: null, n: 0, group: null};
  function schedule(ms) {
    if (chain.timer !== null) return;  // one tick pending at most
    const wait = Math.max(0, (ms || 400) - (performance.now() - chain.last));
    chain.inflight = true;
    chain.timer = setTimeout(function () {
      chain.timer = null;
      chain.last = performance.now();
      chain.n += 1;
      window.dash_clientside.set_props(ID.live.POLL, {data: chain.n});
    }, wait);
  }
  function onSeen(seen) {
    // start_run's seen has _n 0 and names the new group; a poll reply carries the tick it
    // answers and its group. A reply for an earlier group or tick is stale: it must neither
    // end nor double the chain (poll_runs also resets a store left by a stale reply).
    if (seen && !seen._n) chain.group = seen._group;
    if (seen && seen._n && (seen._n !== chain.n || seen._group !== chain.group))
      return window.dash_clientside.no_update;
    chain.inflight = false;  // the reply to the newest tick has been applied
    if (seen && seen._active) schedule(seen._ms);
    return window.dash_clientside.no_update;
  }
  function watchdog(n, seen) {
    // only a reply missing for 60 s restarts the chain; a slow reply must not be doubled
    if (seen && seen._active && chain.inflight && chain.timer === null &&
        performance.now() - chain.last > 60000) schedule(0);
    return window.dash_clientside.no_update;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    wb: {frame: frame, animate: animate, fit: fit, onSeen: onSeen, watchdog: watchdog, edges: edges},
  });
  window.wbViewers = viewers;
})();
