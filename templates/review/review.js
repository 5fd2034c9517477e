// The review page's behaviour: the queue (filter, search, sort, pages of 200 rows), the
// account detail panel, and the tabs. Data comes from the JSON script elements and is
// only ever put into the page as text (textContent, attributes), never as markup.
(function () {
  "use strict";

  var PAGE_SIZE = 200;
  var $ = function (id) { return document.getElementById(id); };
  var Q = JSON.parse($("queue-data").textContent);
  var AS_OF = JSON.parse($("night-data").textContent).asOf;
  var details = null;  // parsed when an account is first opened: the page loads without it
  function detailData() {
    if (details === null) details = JSON.parse($("detail-data").textContent);
    return details;
  }

  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  var usd0 = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
  var count = new Intl.NumberFormat("en-US");
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function words(code) { return code === null || code === undefined ? "" : String(code).replace(/_/g, " "); }
  function money(v) { return v === null || v === undefined ? "" : usd.format(v); }

  // An element with attributes and children; strings become text nodes.
  function h(tag, attrs) {
    var node = document.createElement(tag);
    setAll(node, attrs);
    for (var i = 2; i < arguments.length; i++) add(node, arguments[i]);
    return node;
  }
  function s(tag, attrs) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAll(node, attrs);
    for (var i = 2; i < arguments.length; i++) add(node, arguments[i]);
    return node;
  }
  function setAll(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    });
  }
  function add(node, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(node, k); }); return; }
    node.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }

  function days(from, to) { return Math.round((Date.parse(to) - Date.parse(from)) / 86400000); }

  // ------------------------------------------------------------------ the queue

  var rows = Q.rows.map(function (r, i) {
    return {
      i: i, loan: r[0], name: r[1], tier: r[2], score: r[3], dpd: r[4], rank: r[5], inQueue: r[6] === 1,
      reasons: r[7], care: r[8], product: r[9], state: r[10], language: r[11], letter: r[12],
      pastDue: r[13], balance: r[14], event: r[15], opened: r[16], contactDue: r[17], borrower: r[18],
      template: r[19], risk: r[20], list: r[21], loss: r[22], key: (r[0] + "\u0000" + r[1]).toLowerCase()
    };
  });
  var byLoan = new Map(rows.map(function (r) { return [r.loan, r]; }));

  // The early-outreach queue first; the default list (90+ days) is one choice away.
  var filters = { list: "0", tier: "", reason: "", care: "", product: "", state: "", language: "", letter: "", capacity: "" };
  var query = "";
  var sortKey = "rank", sortDir = 1, page = 0, shown = rows, openLoan = null;

  var SORTS = {
    rank: function (r) { return r.rank; },
    loan: function (r) { return r.loan; },
    name: function (r) { return r.name.toLowerCase(); },
    tier: function (r) { return r.tier; },
    score: function (r) { return r.risk === null ? r.score / 1000 : r.risk; },
    dpd: function (r) { return r.dpd; },
    pastDue: function (r) { return r.pastDue === null ? -1 : r.pastDue; },
    reasons: function (r) { return r.reasons.length; },
    care: function (r) { return r.care.length; },
    product: function (r) { return Q.products[r.product] || ""; },
    state: function (r) { return r.state || ""; },
    language: function (r) { return Q.languages[r.language] || ""; },
    letter: function (r) { return r.letter; },
    "case": function (r) { return r.opened || ""; }
  };

  function matches(r) {
    if (filters.list !== "" && r.list !== +filters.list) return false;
    if (filters.tier !== "" && r.tier !== +filters.tier) return false;
    if (filters.reason !== "" && r.reasons.indexOf(+filters.reason) < 0) return false;
    if (filters.care !== "" && r.care.indexOf(+filters.care) < 0) return false;
    if (filters.product !== "" && r.product !== +filters.product) return false;
    if (filters.state !== "" && r.state !== filters.state) return false;
    if (filters.language !== "" && r.language !== +filters.language) return false;
    if (filters.letter !== "" && r.letter !== +filters.letter) return false;
    if (filters.capacity === "in" && !r.inQueue) return false;
    if (filters.capacity === "cut" && r.inQueue) return false;
    return query === "" || r.key.indexOf(query) >= 0;
  }

  function refresh() {
    var key = SORTS[sortKey];
    shown = rows.filter(matches);
    shown.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x < y) return -sortDir;
      if (x > y) return sortDir;
      return a.rank - b.rank;
    });
    page = 0;
    draw();
  }

  function riskText(r) { return r.risk === null ? r.score.toFixed(1) : (r.risk * 100).toFixed(1) + " %"; }

  function tierBadge(tier) { return h("span", { "class": "tier tier-" + Q.tiers[tier] }, words(Q.tiers[tier])); }

  function chip(text, cls) { return h("span", { "class": "chip" + (cls ? " " + cls : "") }, text); }

  function caseCell(r) {
    if (r.event !== null) {
      var ev = Q.events[r.event];
      return h("span", { "class": "badge ev-" + ev }, ev === "opened" ? "new" : ev);
    }
    return r.opened ? "since " + r.opened : "";
  }

  function rowNode(r) {
    var reasons = r.reasons.slice(0, 3).map(function (x) { return chip(words(Q.reasons[x])); });
    if (r.reasons.length > 3) reasons.push(chip("+" + (r.reasons.length - 3)));
    var letter = Q.letters[r.letter];
    return h("tr", { "data-loan": r.loan, tabindex: "0", "class": (r.inQueue || r.list === 1 ? "" : "cut") + (r.loan === openLoan ? " open" : "") },
      h("td", { "class": "num", title: r.inQueue || r.list === 1 ? null : "cut by the review capacity" }, r.rank),
      h("td", { "class": "mono" }, r.loan),
      h("td", { "class": "name" }, r.name),
      h("td", null, tierBadge(r.tier)),
      h("td", { "class": "num", title: r.risk === null ? "rules score" : "risk of 90+ days within the horizon" }, riskText(r)),
      h("td", { "class": "num" }, r.dpd),
      h("td", { "class": "num" }, money(r.pastDue)),
      h("td", { "class": "chips" }, reasons),
      h("td", { "class": "chips" }, r.care.map(function (x) { return chip(words(Q.care[x]), "care"); })),
      h("td", null, words(Q.products[r.product])),
      h("td", null, r.state || ""),
      h("td", null, Q.languages[r.language] || ""),
      h("td", null, letter === "none" ? "" : h("span", { "class": "badge letter-" + letter, title: words(r.template) }, letter)),
      h("td", null, caseCell(r)));
  }

  // One page of a list into a table's body (only PAGE_SIZE rows are ever in the page);
  // returns the page number, kept within the pages there are.
  function drawPage(list, number, prefix, table, node) {
    var pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    number = Math.min(Math.max(number, 0), pages - 1);
    var first = number * PAGE_SIZE;
    var slice = list.slice(first, first + PAGE_SIZE);
    var body = document.createDocumentFragment();
    slice.forEach(function (item) { body.appendChild(node(item)); });
    $(table).tBodies[0].replaceChildren(body);
    $(prefix + "page").textContent = list.length
      ? "rows " + count.format(first + 1) + "–" + count.format(first + slice.length) + " · page " + (number + 1) + " of " + pages
      : "";
    $(prefix + "prev").disabled = number === 0;
    $(prefix + "next").disabled = number >= pages - 1;
    $(prefix + "empty").hidden = list.length > 0;
    return number;
  }

  function draw() {
    page = drawPage(shown, page, "", "queue-table", rowNode);
    $("shown").textContent = "Showing " + count.format(shown.length) + " of " + count.format(rows.length);
  }

  function fill(id, values, label, byValue) {
    var select = $(id);
    values.forEach(function (v, i) {
      select.appendChild(h("option", { value: byValue ? v : String(i) }, label ? label(v) : v));
    });
  }
  fill("f-tier", Q.tiers, words);
  fill("f-reason", Q.reasons, words);
  fill("f-care", Q.care, words);
  fill("f-product", Q.products, words);
  fill("f-state", Array.from(new Set(rows.map(function (r) { return r.state; }).filter(Boolean))).sort(), null, true);
  fill("f-language", Q.languages);
  fill("f-letter", Q.letters);

  Object.keys(filters).forEach(function (name) {
    $("f-" + name).addEventListener("change", function (e) { filters[name] = e.target.value; refresh(); });
  });
  var typing = null;
  $("search").addEventListener("input", function (e) {
    clearTimeout(typing);
    typing = setTimeout(function () { query = e.target.value.trim().toLowerCase(); refresh(); }, 120);
  });
  $("filters").addEventListener("reset", function () {
    setTimeout(function () {
      Object.keys(filters).forEach(function (name) { filters[name] = ""; });
      filters.list = "0";
      $("f-list").value = "0";
      query = "";
      refresh();
    }, 0);
  });
  $("prev").addEventListener("click", function () { page -= 1; draw(); });
  $("next").addEventListener("click", function () { page += 1; draw(); });

  var heads = Array.prototype.slice.call(document.querySelectorAll("#queue-table th[data-key]"));
  heads.forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      if (key === sortKey) sortDir = -sortDir;
      else { sortKey = key; sortDir = key === "rank" || key === "loan" || key === "name" || key === "state" ? 1 : -1; }
      heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", sortDir === 1 ? "ascending" : "descending");
      refresh();
    });
  });

  function onRow(e) {
    var tr = e.target.closest("tr[data-loan]");
    if (!tr) return;
    if (e.type === "keydown" && e.key !== "Enter") return;
    openDetail(tr.getAttribute("data-loan"));
  }
  ["click", "keydown"].forEach(function (type) {
    $("queue-table").tBodies[0].addEventListener(type, onRow);
    $("call-table").tBodies[0].addEventListener(type, onRow);
  });

  // ------------------------------------------------------------------ the call list

  var calls = Q.calls.map(function (c) {
    return { row: byLoan.get(c[0]), status: Q.callStatuses[c[1]], phone: c[2], last: c[3], since: c[4], notice: c[5] };
  });
  var callPage = 0;

  function callNode(c) {
    var r = c.row;
    return h("tr", { "data-loan": r.loan, tabindex: "0" },
      h("td", null, h("span", { "class": "badge call-" + c.status.replace(/ /g, "-") }, c.status)),
      h("td", null, r.contactDue || ""),
      h("td", { "class": "num" }, r.rank),
      h("td", { "class": "mono" }, r.loan),
      h("td", null, r.name),
      h("td", { "class": "mono" }, c.phone || ""),
      h("td", null, Q.languages[r.language] || ""),
      h("td", null, tierBadge(r.tier)),
      h("td", { "class": "num" }, r.dpd),
      h("td", { "class": "num" }, money(r.pastDue)),
      h("td", null, c.since || ""),
      h("td", null, c.last || "none"),
      h("td", null, c.notice || ""));
  }

  function drawCalls() {
    callPage = drawPage(calls, callPage, "calls-", "call-table", callNode);
    $("calls-shown").textContent = count.format(calls.length) + (calls.length === 1 ? " call" : " calls") + " due";
  }
  $("calls-prev").addEventListener("click", function () { callPage -= 1; drawCalls(); });
  $("calls-next").addEventListener("click", function () { callPage += 1; drawCalls(); });

  // ------------------------------------------------------------------ the account detail

  function section(title) {
    var kids = Array.prototype.slice.call(arguments, 1);
    return h("section", null, h("h3", null, title), kids);
  }

  function due(label, day) {
    if (!day) return [h("dt", null, label), h("dd", null, "not reached")];
    var left = days(AS_OF, day);
    var when = left < 0 ? "passed " + (-left) + " days ago" : left === 0 ? "today" : "in " + left + " days";
    return [h("dt", null, label), h("dd", null, day + " ", h("span", { "class": left < 0 ? "late" : left <= 7 ? "soon" : "" }, "(" + when + ")"))];
  }

  function monthLabel(m, last) {
    if (last) return "tonight";
    return MONTHS[+m.slice(5, 7) - 1] + " " + m.slice(2, 4);
  }

  // Due vs paid in each month (bars) and days past due at its end (line).
  function historyChart(hist, months) {
    var dueIn = hist[0], paidIn = hist[1], dpd = hist[2], n = months.length;
    var W = 560, H = 210, L = 52, R = 40, T = 14, B = 34;
    var dueTop = 0, paidTop = 0, topDays = 30;
    for (var i = 0; i < n; i++) {
      dueTop = Math.max(dueTop, dueIn[i] || 0);
      paidTop = Math.max(paidTop, paidIn[i] || 0);
      topDays = Math.max(topDays, dpd[i] || 0);
    }
    // A lump sum (a payoff of arrears, an opening balance) would flatten every other month:
    // the scale stops at twice the largest month due and taller bars are cut, marked.
    var top = dueTop > 0 ? Math.max(dueTop, Math.min(paidTop, 2 * dueTop)) : Math.max(paidTop, 1);
    var gw = (W - L - R) / n, y = function (v) { return T + (H - T - B) * (1 - Math.min(Math.max(v, 0), top) / top); };
    var yd = function (v) { return T + (H - T - B) * (1 - v / topDays); };
    var svg = s("svg", { "class": "history", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Payment history: due and paid each month, and days past due" });
    [0, 0.5, 1].forEach(function (f) {
      var gy = T + (H - T - B) * (1 - f);
      svg.appendChild(s("line", { "class": "grid-line", x1: L, x2: W - R, y1: gy, y2: gy }));
      svg.appendChild(s("text", { x: L - 4, y: gy + 3, "text-anchor": "end" }, usd0.format(top * f)));
      svg.appendChild(s("text", { x: W - R + 4, y: gy + 3 }, Math.round(topDays * f) + "d"));
    });
    var points = [];
    for (var j = 0; j < n; j++) {
      var x = L + j * gw, bw = Math.max(gw * 0.36, 1);
      var tip = (j === n - 1 ? AS_OF + " (tonight, month to date)" : months[j]) + ": due " + money(dueIn[j]) + ", paid " + money(paidIn[j]) +
        (dpd[j] === null ? "" : ", " + dpd[j] + " days past due");
      var g = s("g", null, s("title", null, tip));
      if (dueIn[j] !== null) g.appendChild(s("rect", { "class": "due", x: x + gw * 0.1, y: y(dueIn[j]), width: bw, height: H - B - y(dueIn[j]) }));
      if (paidIn[j] !== null) g.appendChild(s("rect", { "class": "paid", x: x + gw * 0.1 + bw, y: y(paidIn[j]), width: bw, height: H - B - y(paidIn[j]) }));
      if (paidIn[j] > top) {
        var cx = x + gw * 0.1 + bw * 1.5;
        g.appendChild(s("polygon", { "class": "cut", points: [cx - 4, T + 1, cx + 4, T + 1, cx, T - 5].join(" ") }));
      }
      svg.appendChild(g);
      if (dpd[j] !== null) points.push([x + gw * 0.1 + bw, yd(dpd[j])]);
      if (j % 3 === (n - 1) % 3) svg.appendChild(s("text", { x: x + gw / 2, y: H - B + 13, "text-anchor": "middle" }, monthLabel(months[j], j === n - 1)));
    }
    if (points.length) {
      svg.appendChild(s("polyline", { "class": "dpd", points: points.map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join(" ") }));
      points.forEach(function (p) { svg.appendChild(s("circle", { "class": "dpd-dot", cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 1.8 })); });
    }
    var legend = s("g", { "class": "legend", transform: "translate(" + L + " " + (H - 6) + ")" },
      s("rect", { "class": "due", width: 9, height: 9, y: -8 }), s("text", { x: 12 }, "due in month"),
      s("rect", { "class": "paid", x: 96, width: 9, height: 9, y: -8 }), s("text", { x: 108 }, "paid in month"),
      s("line", { "class": "dpd", x1: 196, x2: 212, y1: -4, y2: -4 }), s("text", { x: 216 }, "days past due (right axis)"));
    svg.appendChild(legend);
    return svg;
  }

  function optionsSection(d, S) {
    var opts = d.o || [];
    var fits = opts.filter(function (o) { return o[1] === 1; });
    var not = opts.filter(function (o) { return o[1] !== 1; });
    var table = fits.length ? h("table", null,
      h("thead", null, h("tr", null, h("th", { "class": "num" }, "Rank"), h("th", null, "Option"), h("th", null, "Terms and why"))),
      h("tbody", null, fits.map(function (o) {
        var plan = [];
        if (o[5] !== undefined && o[5] !== null) plan.push(o[5] + " months");
        if (o[6] !== undefined && o[6] !== null) plan.push(money(o[6]) + " a month");
        if (o[7] !== undefined && o[7] !== null) plan.push("last " + money(o[7]));
        if (o[8] !== undefined && o[8] !== null) plan.push(money(o[8]));
        return h("tr", null, h("td", { "class": "num" }, o[2]), h("td", null, h("strong", null, words(S[o[0]]))),
          h("td", null, o[4] !== undefined && o[4] !== null ? h("div", null, S[o[4]]) : null,
            plan.length ? h("div", { "class": "note" }, plan.join(" · ")) : null,
            h("div", { "class": "note" }, S[o[3]])));
      }))) : h("p", { "class": "empty" }, "No option fits tonight.");
    var rest = not.length ? h("details", null, h("summary", null, "Not eligible (" + not.length + ")"),
      h("ul", null, not.map(function (o) { return h("li", null, h("strong", null, words(S[o[0]])), ": ", S[o[3]]); }))) : null;
    return section("Options", table, rest);
  }

  function lettersSection(d, S) {
    var letters = d.l || [];
    var holds = (d.hd || []).map(function (x) {
      var what = x[3] ? words(S[x[2]]) + " letters (held from " + x[3] + ")" : "all letters";
      return h("p", { "class": "hold" }, h("span", { "class": "badge letter-held" }, "on hold"), " " + what + ", by " + x[0] + " on " + x[1]);
    });
    if (!letters.length) return section("Letters", holds, h("p", { "class": "empty" }, "No letter decided for this loan."));
    return section("Letters", holds, h("ul", null, letters.map(function (l) {
      var held = l[4] !== undefined && l[4] !== null && S[l[4]].indexOf("held by analyst") === 0;
      var status = held ? "held" : l[3];
      var link = l[5] ? h("a", { href: l[5], target: "_blank", rel: "noopener" }, "PDF") : null;
      return h("li", null, l[1] + " ", h("strong", null, words(S[l[2]])), " ",
        h("span", { "class": "badge letter-" + status }, status), " ", link,
        l[4] !== undefined && l[4] !== null ? h("div", { "class": "note" }, S[l[4]]) : null,
        h("div", { "class": "note mono" }, l[0]));
    })));
  }

  function historySection(d, S) {
    var items = (d.c || []).map(function (c) {
      return { when: c[0], what: h("span", { "class": "badge ev-" + c[1] }, c[1]), text: [S[c[2]], " ", h("span", { "class": "note mono" }, c[3])] };
    }).concat((d.k || []).map(function (k) {
      return { when: k[0], what: h("span", { "class": "badge" }, k[1]), text: [k[3] === undefined || k[3] === null ? "" : S[k[3]], h("span", { "class": "note" }, " by " + k[2])] };
    }));
    items.sort(function (a, b) { return a.when < b.when ? 1 : a.when > b.when ? -1 : 0; });
    if (!items.length) return section("Case history", h("p", { "class": "empty" }, "Nothing recorded yet."));
    return section("Case history", h("ul", { "class": "timeline" }, items.map(function (it) {
      return h("li", null, h("span", { "class": "when" }, it.when), h("span", null, it.what), h("span", null, it.text));
    })));
  }

  function commands(loan) {
    var at = "--loan " + loan;
    return section("Record what you did",
      h("pre", null, [
        "lienwatch review contact " + at,
        "lienwatch review promise " + at + " --date YYYY-MM-DD --amount 0.00",
        "lienwatch review application " + at,
        "lienwatch review hold " + at + " [--letter LETTER_ID]",
        "lienwatch review release " + at,
        "lienwatch review note " + at + " --note \"...\""
      ].join("\n")));
  }

  function openDetail(loan) {
    var r = byLoan.get(loan);
    if (!r) return;
    var D = detailData(), S = D.s, d = D.loans[loan] || {};
    var x = d.x || [];
    var senior = d.sn
      ? "Senior lien " + d.sn[1] + " days past due (reported " + d.sn[0] + ")"
      : "No senior-lien report on or before the night.";
    var reasons = r.reasons.map(function (code, i) {
      return h("li", null, h("strong", null, words(Q.reasons[code])), d.r && d.r[i] !== undefined && d.r[i] !== null ? ": " + S[d.r[i]] : "");
    });
    var body = [
      h("h2", { id: "detail-title" }, r.loan + " · " + r.name),
      h("div", { "class": "meta" },
        tierBadge(r.tier),
        h("span", null, r.risk === null ? "score " + r.score.toFixed(1) : "risk " + riskText(r) + (r.loss === null ? "" : " · expected loss " + money(r.loss))),
        h("span", null, r.dpd + " days past due"),
        h("span", null, r.list === 1 ? "default list" : "queue #" + r.rank + (r.inQueue ? "" : " (cut by capacity)")),
        h("span", null, words(Q.products[r.product]) + " · " + (r.state || "") + " · " + (Q.languages[r.language] || "")),
        h("span", { "class": "mono" }, r.borrower),
        d.p ? h("span", { "class": "mono" }, d.p) : null),
      section("Regulation X", h("dl", null,
        h("dt", null, "Delinquent since"), h("dd", null, x[5] || "not delinquent"),
        h("dt", null, "Oldest unpaid installment"), h("dd", null, x[0] || "none"),
        due("Live contact (day 36)", x[3]),
        due("Written notice (day 45)", x[4]),
        h("dt", null, "Amount past due"), h("dd", null, money(r.pastDue)),
        h("dt", null, "Installment"), h("dd", null, money(x[2]) + (x[1] ? ", next due " + x[1] : "")))),
      section("Senior lien", h("p", null, senior)),
      section("Payment history", d.h ? historyChart(d.h, D.m) : h("p", { "class": "empty" }, "No history.")),
      section("Why flagged" + (r.risk === null ? "" : ", the largest share of the risk first"), reasons.length ? h("ol", null, reasons) : h("p", null, "Flagged on days past due alone."),
        r.care.length ? h("p", null, "Care: ", r.care.map(function (c) { return chip(words(Q.care[c]), "care"); })) : null),
      optionsSection(d, S),
      lettersSection(d, S),
      historySection(d, S),
      commands(r.loan)
    ];
    $("detail-body").replaceChildren.apply($("detail-body"), body.filter(Boolean));
    openLoan = loan;
    var panel = $("detail");
    panel.hidden = false;
    panel.scrollTop = 0;
    panel.focus();
    draw();
  }

  function closeDetail() {
    $("detail").hidden = true;
    openLoan = null;
    draw();
  }
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !$("detail").hidden) closeDetail(); });

  // ------------------------------------------------------------------ tabs

  var tabs = Array.prototype.slice.call(document.querySelectorAll("[role=tab]"));
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      tabs.forEach(function (other) {
        var on = other === tab;
        other.setAttribute("aria-selected", on ? "true" : "false");
        $(other.getAttribute("aria-controls")).hidden = !on;
      });
    });
  });

  refresh();
  drawCalls();
  document.body.setAttribute("data-ready", String(Math.round(performance.now())));
})();
