/*
 * Isotope metrics: VM detail charts (chart.js) and tenant usage totals.
 *
 * VM detail ([data-metrics-url]): fetches the series for the chosen range
 * (GET <url>?range=1h|6h|24h|7d → {range, step, points: [{t, cpu, mem, rd, wr, rx, tx}]}),
 * draws four charts, and on the 1 h range appends each point that arrives as an
 * `isotope:metrics` event (live.js, stream object.<tenant>.vm-metrics.<vm>), dropping
 * points older than the window. A resync of that stream refetches the series.
 *
 * Tenant overview ([data-metrics-totals]): `isotope:metrics` events with `data.totals`
 * for the tenant patch the [data-metric-total=<key>] elements.
 */
(function () {
  "use strict";

  // Times on the charts in the page's language (<html lang>), not the browser's.
  const PAGE_LOCALE = [document.documentElement.lang || "en"];
  if (window.Isotope && window.Isotope.metricsLoaded) return;
  window.Isotope = window.Isotope || {};
  window.Isotope.metricsLoaded = true;

  const WINDOWS = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };
  const CHARTS = {
    cpu: { series: [["cpu", "CPU %", "#4f46e5"]], max: 100 },
    mem: { series: [["mem", gettext("Used MiB"), "#0891b2"]] },
    disk: { series: [["rd", gettext("Read"), "#16a34a"], ["wr", gettext("Write"), "#ea580c"]], bytes: true },
    net: { series: [["rx", gettext("Receive"), "#2563eb"], ["tx", gettext("Transmit"), "#db2777"]], bytes: true },
  };

  function bytes(value) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = Number(value) || 0;
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function clock(ms, range, span) {
    const d = new Date(ms);
    // A short axis (a VM minutes old) needs seconds to tell its ticks apart.
    const parts = span < 15 * 60e3 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
    const hm = d.toLocaleTimeString(PAGE_LOCALE, parts);
    return range === "7d" ? d.toLocaleDateString(PAGE_LOCALE, { month: "short", day: "numeric" }) + " " + hm : hm;
  }

  // --- Tenant totals --------------------------------------------------------------
  function patchTotals(totals) {
    document.querySelectorAll("[data-metric-total]").forEach(function (el) {
      const value = totals[el.dataset.metricTotal];
      if (value === undefined) return;
      el.textContent = el.dataset.metricFormat === "bytes" ? bytes(value) + "/s" : String(value);
    });
  }

  // --- VM charts ------------------------------------------------------------------
  function vmCharts(root) {
    const tenant = root.dataset.metricsTenant;
    const vm = root.dataset.metricsVm;
    const memory = Number(root.dataset.metricsMemory) || undefined;
    // The VM's creation: a VM younger than the range is charted from its start, not as
    // a sliver at the right edge of an empty hour.
    const since = Date.parse(root.dataset.metricsSince || "") || 0;
    const status = root.querySelector("[data-metrics-status]");
    const charts = {};
    let range = "1h";
    let span = WINDOWS[range]; // of the x axis, for its tick labels
    let points = [];
    let request = 0;

    Object.keys(CHARTS).forEach(function (key) {
      const canvas = root.querySelector('[data-metrics-chart="' + key + '"]');
      if (!canvas) return;
      const spec = CHARTS[key];
      const max = key === "mem" ? memory : spec.max;
      charts[key] = new window.Chart(canvas, {
        type: "line",
        data: {
          datasets: spec.series.map(function (s) {
            return { label: s[1], data: [], borderColor: s[2], backgroundColor: s[2] + "22", fill: spec.series.length === 1, pointRadius: 0, borderWidth: 1.5, tension: 0.25 };
          }),
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          parsing: false,
          normalized: true,
          interaction: { mode: "index", intersect: false },
          plugins: {
            legend: { display: spec.series.length > 1, labels: { boxWidth: 10 } },
            tooltip: {
              callbacks: {
                title: function (items) { return items.length ? new Date(items[0].parsed.x).toLocaleString(PAGE_LOCALE) : ""; },
                label: function (item) {
                  const v = item.parsed.y;
                  return item.dataset.label + ": " + (spec.bytes ? bytes(v) + "/s" : v.toFixed(1));
                },
              },
            },
          },
          scales: {
            x: { type: "linear", ticks: { maxTicksLimit: 6, callback: function (v) { return clock(v, range, span); } } },
            y: { beginAtZero: true, suggestedMax: spec.bytes ? 1024 : max, ticks: { maxTicksLimit: 5, callback: function (v) { return spec.bytes ? bytes(v) : v; } } },
          },
        },
      });
    });

    function draw() {
      const now = Date.now();
      const start = now - WINDOWS[range];
      points = points.filter(function (p) { return p.t >= start; });
      // Start at the VM's creation when it is younger than the range.
      const from = Math.min(Math.max(start, since), now - 10e3);
      span = now - from;
      Object.keys(charts).forEach(function (key) {
        const chart = charts[key];
        CHARTS[key].series.forEach(function (s, i) {
          chart.data.datasets[i].data = points.map(function (p) { return { x: p.t, y: p[s[0]] }; });
        });
        chart.options.scales.x.min = from;
        chart.options.scales.x.max = now;
        chart.update("none");
      });
      root.dataset.points = String(points.length);
      if (status) {
        const live = range === "1h" ? gettext("live") : gettext("5-minute averages");
        const none = range === "1h" ? gettext("no data yet (collected every few seconds while the VM runs)") : gettext("no 5-minute averages yet");
        const count = interpolate(ngettext("%(n)s point", "%(n)s points", points.length), { n: points.length }, true);
        status.textContent = "— " + (points.length ? count + " · " + live : none);
      }
    }

    function load() {
      const mine = ++request;
      fetch(root.dataset.metricsUrl + "?range=" + encodeURIComponent(range), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) {
          if (mine !== request) return; // a newer range was chosen meanwhile
          const seen = new Set(data.points.map(function (p) { return p.t; }));
          // Keep live points that arrived while the request was in flight.
          points = data.points.concat(points.filter(function (p) { return !seen.has(p.t) && range === "1h"; }));
          points.sort(function (a, b) { return a.t - b.t; });
          draw();
        })
        .catch(function () { if (status) status.textContent = "— " + gettext("could not load metrics"); });
    }

    root.querySelectorAll("[data-metrics-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        range = button.dataset.metricsRange;
        root.querySelectorAll("[data-metrics-range]").forEach(function (b) {
          const on = b === button;
          b.classList.toggle("active", on);
          b.setAttribute("aria-pressed", on ? "true" : "false");
        });
        points = [];
        load();
      });
    });

    document.addEventListener("isotope:metrics", function (event) {
      const data = event.detail.data || {};
      if (data.tenant !== tenant || data.kind !== "vm" || data.name !== vm || !data.point) return;
      if (range !== "1h") return; // longer ranges show 5-minute averages
      if (points.length && points[points.length - 1].t >= data.point.t) return;
      points.push(data.point);
      draw();
    });
    document.addEventListener("isotope:resync", function (event) {
      if (event.detail.stream && event.detail.stream.indexOf(".vm-metrics.") !== -1) load();
    });
    load();
  }

  function start() {
    if (window.Chart) {
      document.querySelectorAll("[data-metrics-url]").forEach(vmCharts);
    }
    const totals = document.querySelector("[data-metrics-totals]");
    if (totals) {
      document.addEventListener("isotope:metrics", function (event) {
        const data = event.detail.data || {};
        if (data.totals && data.tenant === totals.dataset.metricsTotals) patchTotals(data.totals);
      });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
