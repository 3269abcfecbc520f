/* btcmesh explorer: fills the page shells from the /v2 and /v2/explorer JSON routes and polls them.
   Plain DOM code (no framework, no build step); charts by uPlot (vendored). Served by the API itself. */
(function () {
  "use strict";

  const body = document.body;
  const page = body.dataset.page;
  const arg = body.dataset.arg || "";
  const app = document.getElementById("app");
  const bannerEl = document.getElementById("banner");
  const liveEl = document.getElementById("live");
  const DASH = "—";
  const STATES = ["PENDING", "VERIFIED", "ACTIVE", "UNBONDING", "WITHDRAWABLE", "WITHDRAWN", "SLASHED", "REORGED"];
  const COLORS = ["#f7931a", "#3b82f6", "#10b981", "#a855f7", "#ef4444", "#14b8a6", "#eab308", "#64748b"];
  const explorer = (window.btcmeshExplorer = { page: page, chart: null, history: null, refreshes: 0 });

  // ------------------------------------------------------------------ helpers
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path) {
    let resp;
    try {
      resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, "the explorer's API service cannot be reached (" + e.message + ")");
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { /* not JSON */ }
    if (!resp.ok) {
      throw new ApiError(resp.status, (data && data.message) || "HTTP " + resp.status);
    }
    return data ? data.data : null;
  }

  // a figure other routes add (rewards, mesh slash): null when the route is absent or has no answer → "—"
  async function optional(path) {
    try { return await api(path); } catch (e) { if (e.status === 0) throw e; return null; }
  }
  const amount = (v, denom) => (v === null || v === undefined ? DASH : Number(v).toLocaleString("en-US") +
    (denom ? " " + denom : ""));

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const num = (v) => (isNum(v) ? v.toLocaleString("en-US") : DASH);
  const sat = (v) => (isNum(v) ? v.toLocaleString("en-US") + " sat" : DASH);
  const btc = (v) => (isNum(v) ? (v / 1e8).toFixed(8).replace(/0+$/, "").replace(/\.$/, "") + " BTC" : "");
  const range = (s) => (s ? String(s).replace(/\d+/g, (d) => Number(d).toLocaleString("en-US")) : DASH);
  const short = (s, n) => (s ? (s.length > 2 * (n || 8) + 1 ? s.slice(0, n || 8) + "…" + s.slice(-(n || 8)) : s) : DASH);

  function hex(s, href, n) {
    if (!s) return h("span", { class: "muted" }, DASH);
    const inner = href ? h("a", { href: href, title: s }, short(s, n)) : h("span", { title: s }, short(s, n));
    return h("code", { class: "hex", "data-full": s }, inner);
  }

  const stateBadge = (s) => h("span", { class: "badge st-" + String(s || "").toLowerCase() }, s || DASH);

  function setBanner(msg, kind) {
    if (!msg) { bannerEl.hidden = true; bannerEl.textContent = ""; return; }
    bannerEl.hidden = false;
    bannerEl.className = "banner " + (kind || "error");
    bannerEl.textContent = msg;
  }

  function explain(err) {
    if (err.status === 503) return "The chain cannot be reached right now: " + err.message + ". Retrying…";
    if (err.status === 0) return err.message + ". Retrying…";
    return err.message;
  }

  function setLive(ok) {
    liveEl.classList.toggle("bad", !ok);
    liveEl.textContent = ok ? "live" : "offline";
    liveEl.title = ok ? "updated " + new Date().toLocaleTimeString() : "last refresh failed";
  }

  function table(headers, rows, opts) {
    const o = opts || {};
    const thead = h("thead", {}, h("tr", {}, headers.map((x, i) =>
      h("th", { class: o.numeric && o.numeric.includes(i) ? "num" : null }, x))));
    const tbody = h("tbody", {}, rows.map((r) => h("tr", r.attrs || {}, r.cells.map((c, i) =>
      h("td", { class: o.numeric && o.numeric.includes(i) ? "num" : null, "data-label": headers[i] }, c)))));
    return h("div", { class: "table-wrap" }, h("table", { id: o.id || null, class: o.cls || null }, thead, tbody));
  }

  function card(label, value, id, sub) {
    const unit = typeof value === "string" && / (sat|blocks)$/.exec(value);  // a smaller unit keeps numbers on one line
    const shown = unit ? [value.slice(0, unit.index), h("small", { class: "unit" }, unit[0])] : value;
    return h("div", { class: "card" }, h("div", { class: "label" }, label),
      h("div", { class: "value", id: id }, shown), sub ? h("div", { class: "sub" }, sub) : null);
  }

  function empty(msg, id) { return h("div", { class: "empty", id: id || null }, msg); }

  function render(...nodes) { app.replaceChildren(...nodes.flat().filter(Boolean)); }

  // poll: run `load` now and every `ms`; errors go to the banner, the last good view stays.
  function poll(load, ms) {
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try {
        await load();
        setBanner(null);
        setLive(true);
        explorer.refreshes += 1;
      } catch (err) {
        setLive(false);
        if (err.status === 404 || err.status === 400) { setLive(true); setBanner(null); renderError(err); }
        else { setBanner(explain(err)); if (!explorer.refreshes) renderError(err); }
      } finally {
        busy = false;
      }
    };
    tick();
    return setInterval(tick, ms);
  }

  function renderError(err) {
    delegationsBuilt = false;
    meshBuilt = false;
    if (err.status === 503 || err.status === 0) {
      render(h("h1", {}, document.title.split(" · ")[0]),
        empty("The chain cannot be reached, so there is nothing to show yet. This page retries by itself.",
          "chain-unreachable"));
    } else {
      render(h("h1", {}, page === "delegation" ? "Unknown delegation" : page === "provider" ? "Unknown provider"
        : "Not found"), empty(err.message, "error-message"));
    }
  }

  // ------------------------------------------------------------------ overview
  async function overview() {
    const [o, s, rw] = await Promise.all([api("/v2/explorer/overview"), api("/v2/stats"),
      optional("/v2/rewards/totals")]);
    const maxSat = Math.max(1, ...o.tvl_by_state.map((t) => t.sat));
    const lag = isNum(o.btc_tip_height) ? o.btc_tip_height - o.light_client_tip_height : null;
    render(
      h("h1", {}, "Overview"),
      h("section", { class: "cards" },
        card("BTC tip", num(o.btc_tip_height), "ov-btc-tip",
          isNum(lag) ? (lag === 0 ? "light client in sync" : lag + " block(s) ahead of the light client") : "node not connected"),
        card("Light-client tip", num(o.light_client_tip_height), "ov-lc-tip", "BTC headers the chain knows"),
        card("Chain height", num(o.chain_height), "ov-chain-height"),
        card("Last finalized", num(o.last_finalized_height), "ov-finalized",
          isNum(o.last_finalized_height) ? "by finality votes" : "not reported by the chain"),
        card("Active TVL", sat(o.active_tvl), "ov-active-tvl", btc(o.active_tvl)),
        card("Stakers", num(o.total_stakers), "ov-stakers", num(o.active_stakers) + " active"),
        card("Delegations", num(o.total_delegations), "ov-delegations", num(s.active_delegations) + " active"),
        card("Finality providers", num(o.total_finality_providers), "ov-providers",
          num(s.active_finality_providers) + " active"),
        card("Virtual stake", num(o.total_virtual_stake), "ov-virtual-stake", "mesh, all validators"),
        card("Rewards paid", rw ? amount(rw.paid_by_consumer) : DASH, "ov-rewards",
          rw ? rw.denom + " · " + amount(rw.claimed) + " claimed, " + amount(rw.pending) + " pending"
            : "no rewards data"),
      ),
      h("h2", {}, "Stake by state"),
      o.total_delegations === 0
        ? empty("No delegations yet. Stake appears here once a lock is k blocks deep and attested.", "no-delegations")
        : table(["State", "Delegations", "Satoshi", ""], o.tvl_by_state.map((t) => ({
          attrs: { "data-state": t.state },
          cells: [h("a", { href: "/explorer/delegations?state=" + t.state }, stateBadge(t.state)), num(t.delegations),
            h("span", { class: "tvl-sat", "data-sat": String(t.sat) }, sat(t.sat)),
            h("div", { class: "bar" }, h("span", { class: "st-" + t.state.toLowerCase(), style: "width:" +
              Math.round((100 * t.sat) / maxSat) + "%" }))],
        })), { id: "tvl-by-state", numeric: [1, 2] }),
    );
    explorer.overview = o;
  }

  // ------------------------------------------------------------------ providers
  function providerRows(list) {
    return list.map((p) => ({
      attrs: { "data-pk": p.btc_pk },
      cells: [h("a", { href: "/explorer/providers/" + p.btc_pk }, p.moniker || short(p.btc_pk)),
        hex(p.btc_pk, "/explorer/providers/" + p.btc_pk, 6), hex(p.validator, null, 6), stateBadge(p.state),
        num(p.voting_power), num(p.delegations), sat(p.active_sat), num(p.virtual_stake), num(p.missed_blocks)],
    }));
  }
  const PROVIDER_HEAD = ["Provider", "Key", "Mesh validator", "State", "Voting power", "Delegations", "Active stake",
    "Virtual stake", "Missed blocks"];

  async function providers() {
    const list = await api("/v2/explorer/finality-providers");
    render(h("h1", {}, "Finality providers"),
      list.length ? table(PROVIDER_HEAD, providerRows(list), { id: "providers", numeric: [4, 5, 6, 7, 8] })
        : empty("No finality provider has registered yet.", "no-providers"));
  }

  function delegationTable(list, id) {
    return table(["Staking tx", "Staker", "Provider", "Amount", "State", "BTC height"], list.map((d) => {
      const st = d.delegation_staking || d;
      const hash = st.staking_tx_hash_hex;
      return {
        attrs: { "data-hash": hash },
        cells: [hex(hash, "/explorer/delegations/" + hash), hex(d.staker_btc_pk_hex, "/explorer/delegations?q=" +
          d.staker_btc_pk_hex, 6), h("span", {}, (d.finality_provider_btc_pks_hex || []).map((k) =>
          hex(k, "/explorer/providers/" + k, 6))), sat(st.staking_amount), stateBadge(d.state), num(st.start_height)],
      };
    }), { id: id, numeric: [3, 5] });
  }

  async function provider() {
    let p;
    try {
      const before = new URLSearchParams(location.search).get("before");
      p = await api("/v2/explorer/finality-providers/" + encodeURIComponent(arg) +
        (before && /^[0-9]+$/.test(before) ? "?before_height=" + before : ""));
    } catch (err) {
      if (err.status === 404) err.message = "No finality provider with key " + arg + " is registered.";
      if (err.status === 400) err.message = "This is not a provider key (" + err.message + ").";
      throw err;
    }
    const commission = await optional("/v2/rewards/finality-provider?fp_pk_hex=" + encodeURIComponent(arg));
    const r = p.provider;
    const doubles = p.votes.filter((v) => v.double_vote).length;
    render(
      h("p", { class: "crumbs" }, h("a", { href: "/explorer/providers" }, "Finality providers"), " / ", r.moniker),
      h("h1", {}, r.moniker || "Finality provider", " ", stateBadge(r.state)),
      h("section", { class: "cards" },
        card("Key", hex(r.btc_pk, null, 7), "fp-key"),
        card("Mesh validator", hex(r.validator, null, 7), "fp-validator"),
        card("Active stake", sat(r.active_sat), "fp-active-sat", btc(r.active_sat)),
        card("Virtual stake", num(r.virtual_stake), "fp-virtual-stake"),
        card("Voting power", num(r.voting_power), "fp-voting-power"),
        card("Missed blocks", num(r.missed_blocks), "fp-missed"),
        card("Slashed at height", num(r.slashed_height), "fp-slashed-height",
          isNum(r.double_vote_height) ? "double vote at height " + r.double_vote_height +
            (p.extracted_key_known ? "; its secret key was extracted" : "") : null),
        card("Commission", r.commission, "fp-commission",
          commission ? amount(commission.commission) + " " + commission.denom + " paid to it" : null),
      ),
      h("h2", {}, "Delegations"),
      p.delegations.length ? delegationTable(p.delegations, "fp-delegations")
        : empty("No delegation names this provider yet.", "no-delegations"),
      h("h2", {}, "Votes per height", doubles ? h("span", { class: "badge st-slashed" }, doubles + " double vote(s)") : null),
      h("p", { class: "muted" }, isNum(p.votes_from_height)
        ? "Heights " + p.votes_from_height + "–" + p.votes_to_height + " it committed randomness for, newest first."
        : "It has committed no public randomness, so it cannot have voted."),
      p.votes.length ? table(["Height", "Signed app hash", "Double vote"], p.votes.map((v) => ({
        attrs: { class: v.double_vote ? "double" : null, "data-height": String(v.height) },
        cells: [num(v.height), hex(v.app_hash, null, 12),
          v.double_vote ? h("span", { class: "double-vote" }, "⚠ double vote: also signed ", hex(v.fork_app_hash, null, 8))
            : h("span", { class: "muted" }, "no")],
      })), { id: "votes", numeric: [0] }) : empty("No votes in these heights.", "no-votes"),
      h("p", { class: "pager" },
        new URLSearchParams(location.search).get("before")
          ? h("a", { href: "/explorer/providers/" + r.btc_pk }, "← newest votes") : null,
        isNum(p.votes_from_height) && p.votes_to_height - p.votes_from_height + 1 >= 100  // a full window: more below
          ? h("a", { href: "/explorer/providers/" + r.btc_pk + "?before=" + p.votes_from_height }, "older votes →")
          : null),
    );
  }

  // ------------------------------------------------------------------ delegations
  let delegationsBuilt = false;
  async function delegations() {
    const params = new URLSearchParams(location.search);
    const state = (params.get("state") || "").toUpperCase();
    const q = (params.get("q") || "").trim();
    const url = new URLSearchParams();
    if (state) url.set("state", state);
    if (q) url.set("search", q);
    const [list, all] = await Promise.all([api("/v2/explorer/delegations?" + url),
      state || q ? api("/v2/explorer/delegations?limit=1") : null]);
    if (!delegationsBuilt) {  // the form is built once, so polling never disturbs typing
      const select = h("select", { name: "state", "aria-label": "state" }, h("option", { value: "" }, "All states"),
        STATES.map((s) => h("option", { value: s, selected: s === state }, s)));
      const input = h("input", { name: "q", type: "search", value: q, placeholder: "Staker key or staking tx hash",
        "aria-label": "search", autocomplete: "off", spellcheck: "false" });
      const form = h("form", { class: "filters", method: "get", action: "/explorer/delegations" }, select, input,
        h("button", { type: "submit" }, "Search"));
      select.addEventListener("change", () => form.submit());
      render(h("h1", {}, "Delegations"), form, h("div", { id: "del-results" }));
      delegationsBuilt = true;
    }
    const anyAtAll = list.length > 0 || (all && all.length > 0);
    document.getElementById("del-results").replaceChildren(
      list.length ? delegationTable(list.map((d) => ({
        delegation_staking: d, staker_btc_pk_hex: d.staker_btc_pk_hex, state: d.state,
        finality_provider_btc_pks_hex: d.finality_provider_btc_pks_hex,
      })), "delegations")
        : anyAtAll ? empty("No delegation matches " + [state && "state " + state, q && "“" + q + "”"].filter(Boolean)
          .join(" and ") + ".", "no-match")
          : empty("No delegations yet. A lock shows up here once it is k blocks deep and attested on the chain.",
            "no-delegations"));
  }

  async function delegation() {
    let d;
    try {
      d = await api("/v2/explorer/delegations/" + encodeURIComponent(arg));
    } catch (err) {
      if (err.status === 404) {
        err.message = "No delegation with staking tx hash " + arg + " is known to the chain. Check the hash; " +
          "a new lock appears once it is k blocks deep and attested.";
      } else if (err.status === 400) {
        err.message = "“" + arg + "” is not a staking tx hash (64 hex characters expected).";
      }
      throw err;
    }
    const p = d.delegation;
    const st = p.delegation_staking;
    const s = d.slashing;
    const q = "?staking_tx_hash_hex=" + encodeURIComponent(arg);
    const [rw, ms] = await Promise.all([optional("/v2/rewards/delegation" + q),
      s ? optional("/v2/mesh/slash" + q) : null]);
    render(
      h("p", { class: "crumbs" }, h("a", { href: "/explorer/delegations" }, "Delegations"), " / ", short(st.staking_tx_hash_hex)),
      h("h1", {}, "Delegation ", stateBadge(p.state)),
      h("section", { class: "cards" },
        card("Staked", sat(st.staking_amount), "del-amount", btc(st.staking_amount)),
        card("Staking tx", hex(st.staking_tx_hash_hex, null, 7), "del-tx"),
        card("Staker", hex(p.staker_btc_pk_hex, "/explorer/delegations?q=" + p.staker_btc_pk_hex, 7), "del-staker"),
        card("Finality provider", h("span", {}, p.finality_provider_btc_pks_hex.map((k) =>
          hex(k, "/explorer/providers/" + k, 8))), "del-fp"),
        card("Timelock", num(st.staking_timelock) + " blocks", "del-timelock",
          isNum(st.end_height) ? "ends at BTC height " + num(st.end_height) : null),
        card("Chain status", d.chain_status || DASH, "del-chain-status", p.sub_state),
      ),
      s ? h("section", { class: "slashing" }, h("h2", {}, "Slashing"),
        h("div", { class: "cards" },
          card("Burned", sat(s.burned_sat), "burned-sat", "to the slashing address"),
          card("Returned", sat(s.returned_sat), "returned-sat", "change to the staker, timelocked"),
          card("Fee", sat(s.fee_sat), "fee-sat", "Bitcoin fee of the slashing tx"),
          card("Slashing tx", hex(s.slashing_txid, null, 7), "slashing-txid",
            s.reported_on_chain ? "mined at BTC height " + num(s.btc_height) : "not reported to the chain yet"),
          card("Virtual stake slashed", ms ? amount(ms.virtual_slashed) : DASH, "virtual-slashed",
            "burned on the validator by the mesh slash"),
          card("Virtual stake unbonded", ms ? amount(ms.virtual_unbonded) : DASH, "virtual-unbonded",
            "left on the tombstoned validator, force-unbonded"))) : null,
      h("h2", {}, "Timeline"),
      h("ol", { class: "timeline", id: "timeline" }, d.timeline.map((t) => h("li", {
        class: t.done ? "done" : "todo", "data-step": t.step,
      }, h("div", { class: "t-label" }, t.label),
      h("div", { class: "t-meta" },
        isNum(t.btc_height) ? h("span", {}, "BTC height " + num(t.btc_height)) : null,
        isNum(t.chain_height) ? h("span", {}, "chain height " + num(t.chain_height)) : null,
        t.txid ? h("span", {}, "tx ", hex(t.txid, null, 8)) : null),
      t.detail ? h("div", { class: "t-detail" }, t.detail) : null))),
      h("h2", {}, "Rewards"),
      h("div", { class: "cards" },
        card("Pending", rw ? amount(rw.pending) : DASH, "rewards-pending", rw ? rw.denom : "no rewards data"),
        card("Claimed", rw ? amount(rw.claimed) : DASH, "rewards-claimed",
          rw ? rw.denom + (rw.reward_address ? " · to " + short(rw.reward_address, 6) : "") : null)),
      h("h2", {}, "Mesh"),
      d.mesh ? table(["Mesh adapter field", "Value"], Object.entries(d.mesh).map(([k, v]) => ({
        cells: [k.replace(/_/g, " "), typeof v === "string" && v.length > 24 ? hex(v, null, 8)
          : v === null ? DASH : typeof v === "number" || /^[0-9]+$/.test(v) ? range(String(v)) : String(v)],
      })), { id: "del-mesh", cls: "kv" })
        : empty("The mesh adapter holds no record of this delegation (it never became ACTIVE, or mesh is off).",
          "no-mesh"),
    );
  }

  // ------------------------------------------------------------------ mesh
  function eventsPlugin(getEvents) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const byHeight = new Map();  // one dashed line per height, its events' names stacked
          for (const e of getEvents()) {
            const names = byHeight.get(e.height) || [];
            if (!names.includes(e.kind)) names.push(e.kind);
            byHeight.set(e.height, names);
          }
          ctx.save();
          ctx.font = 11 * devicePixelRatio + "px system-ui, sans-serif";
          ctx.textAlign = "left";
          ctx.textBaseline = "top";
          let row = 0;
          for (const [height, kinds] of [...byHeight.entries()].sort((a, b) => a[0] - b[0])) {
            const x = Math.round(u.valToPos(height, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            const jailOnly = kinds.every((k) => k === "jailed" || k === "unjailed");
            ctx.strokeStyle = jailOnly ? "#eab308" : "#ef4444";
            ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            const label = kinds.join(" · ") + " @" + height;
            const pad = 3 * devicePixelRatio;
            const w = ctx.measureText(label).width;
            const lx = Math.min(x + 4 * devicePixelRatio, u.bbox.left + u.bbox.width - w - 2 * pad);
            const ly = u.bbox.top + (4 + 17 * (row % 3)) * devicePixelRatio;
            ctx.setLineDash([]);
            ctx.fillStyle = "rgba(11, 17, 32, 0.85)";
            ctx.fillRect(lx - pad, ly - pad, w + 2 * pad, 14 * devicePixelRatio + pad);
            ctx.fillStyle = ctx.strokeStyle;
            ctx.fillText(label, lx, ly);
            row += 1;
          }
          ctx.restore();
        }],
      },
    };
  }

  function chartData(hist) {
    const xs = hist.points.map((p) => p.height);
    const ys = hist.validators.map((v) => hist.points.map((p) =>
      Object.prototype.hasOwnProperty.call(p.stakes, v.validator) ? p.stakes[v.validator] : null));
    return [xs, ...ys];
  }

  function drawChart(hist, holder) {
    explorer.history = hist;
    const data = chartData(hist);
    const key = hist.validators.map((v) => v.validator).join(",");
    const width = Math.max(280, holder.clientWidth || 600);
    if (explorer.chart && explorer.chartKey === key && explorer.chart.root.isConnected) {
      explorer.chart.setData(data);
      return;
    }
    if (explorer.chart) explorer.chart.destroy();
    holder.replaceChildren();
    const stepped = uPlot.paths.stepped({ align: 1 });
    const opts = {
      width: width, height: Math.max(220, Math.min(360, Math.round(width * 0.45))),
      scales: { x: { time: false } },
      axes: [{ label: "chain height", stroke: "#94a3b8", grid: { stroke: "#1e293b" } },
        { label: "virtual stake", stroke: "#94a3b8", grid: { stroke: "#1e293b" }, size: 70 }],
      series: [{ label: "height" }, ...hist.validators.map((v, i) => ({
        label: (v.moniker || short(v.validator, 6)) + " · " + short(v.validator, 5),
        stroke: COLORS[i % COLORS.length], width: 2, paths: stepped, spanGaps: true,
        points: { show: true, size: 5 },
      }))],
      legend: { live: true },
      plugins: [eventsPlugin(() => explorer.history.events)],
    };
    explorer.chart = new uPlot(opts, data, holder);
    explorer.chartKey = key;
  }

  // the BTC adapter names a delegation's vault account "btcdel1<staking tx hash>": link it to the delegation
  function accountCell(account) {
    const m = /^btcdel1([0-9a-f]{64})$/.exec(account || "");
    return m ? h("span", {}, h("span", { class: "muted" }, "delegation "), hex(m[1], "/explorer/delegations/" + m[1], 6))
      : hex(account, null, 8);
  }

  let meshBuilt = false;
  async function mesh() {
    const [hist, m] = await Promise.all([api("/v2/explorer/mesh/virtual-stake-history"), api("/v2/explorer/mesh")]);
    if (!meshBuilt) {
      render(h("h1", {}, "Mesh"),
        h("section", { class: "panel" }, h("h2", {}, "Virtual stake per validator"),
          h("div", { id: "chart", class: "chart" }), h("p", { id: "chart-note", class: "muted" })),
        h("div", { id: "mesh-events" }), h("div", { id: "mesh-tables" }));
      meshBuilt = true;
      addEventListener("resize", () => {
        if (explorer.chart) explorer.chart.setSize({ width: Math.max(280, document.getElementById("chart").clientWidth),
          height: explorer.chart.height });
      });
    }
    const holder = document.getElementById("chart");
    if (hist.validators.length && hist.points.length) {
      drawChart(hist, holder);
    } else {
      if (explorer.chart) { explorer.chart.destroy(); explorer.chart = null; }
      holder.replaceChildren(empty(hist.validators.length ? "No samples yet." :
        "No provider is mapped to a mesh validator yet.", "no-chart"));
      explorer.history = hist;
    }
    document.getElementById("chart-note").textContent = isNum(hist.recorded_since_height)
      ? "Sampled by this service at each new chain height since height " + hist.recorded_since_height +
        " (" + hist.points.length + " points). Dashed lines: slash and jail events." : "";
    document.getElementById("mesh-events").replaceChildren(
      h("h2", {}, "Slash and jail events"),
      hist.events.length ? table(["Chain height", "Validator", "Event"], hist.events.map((e) => ({
        cells: [num(e.height), hex(e.validator, null, 8), h("span", { class: "badge st-" + (e.kind === "jailed"
          ? "unbonding" : "slashed") }, e.kind)],
      })), { id: "events", numeric: [0] }) : empty("No validator has been slashed or jailed.", "no-events"));
    document.getElementById("mesh-tables").replaceChildren(
      h("h2", {}, "Validators"),
      m.validators.length ? table(["Validator", "Provider", "State", "Virtual stake"], m.validators.map((v) => ({
        cells: [hex(v.validator, null, 8), h("a", { href: "/explorer/providers/" + v.fp_btc_pk }, v.moniker ||
          short(v.fp_btc_pk)), stateBadge(v.state), num(v.virtual_stake)],
      })), { id: "validators", numeric: [3] }) : empty("No mesh validator yet.", "no-validators"),
      h("h2", {}, "Vault accounts"),
      m.accounts.length ? table(["Account", "Collateral", "Liens", "Max lien", "Slashable", "Free"],
        m.accounts.map((a) => ({
          cells: [accountCell(a.account), num(a.collateral), a.liens.length ? h("span", {}, a.liens.map((l) =>
            h("div", {}, h("span", { class: "muted" }, l.lienholder + " "), range(l.amount)))) : DASH,
          range(a.max_lien), range(a.slashable), range(a.free)],
        })), { id: "accounts", numeric: [1, 3, 4, 5] }) : empty("No vault account holds collateral yet.", "no-accounts"));
  }

  // ------------------------------------------------------------------ start
  const PAGES = {
    overview: [overview, 2000], providers: [providers, 3000], provider: [provider, 5000],
    delegations: [delegations, 4000], delegation: [delegation, 5000], mesh: [mesh, 2500],
  };
  const entry = PAGES[page];
  if (entry) poll(entry[0], entry[1]);
})();
