/*
 * The usage page's daily chart (templates/usage/usage.html): bars of what was allocated
 * per day for the chosen metric, with what the VMs used as a line where the metric has
 * a "used" side (vCPU-hours, memory GiB-hours). Data: #usage-chart-data
 * ({days, metrics: {metric: [per day]}, labels, cost: {currency: [per day]}}).
 */
(function () {
  "use strict";
  const canvas = document.getElementById("usage-chart");
  const source = document.getElementById("usage-chart-data");
  const select = document.getElementById("usage-metric");
  if (!canvas || !source || !window.Chart) return;
  const data = JSON.parse(source.textContent);
  const USED = { vcpu_hours: "vcpu_used_hours", memory_gib_hours: "memory_used_gib_hours" };
  let chart = null;

  function datasets(metric) {
    if (metric.startsWith("cost:")) {
      const currency = metric.slice(5);
      return [{ type: "bar", label: interpolate(gettext("Cost (%(currency)s)"), { currency: currency }, true), data: data.cost[currency] || [], backgroundColor: "#4f46e5", borderRadius: 3 }];
    }
    const sets = [{ type: "bar", label: interpolate(gettext("%(metric)s allocated"), { metric: data.labels[metric] }, true), data: data.metrics[metric] || [], backgroundColor: "rgba(79, 70, 229, .75)", borderRadius: 3 }];
    if (USED[metric]) {
      sets.push({ type: "line", label: data.labels[USED[metric]], data: data.metrics[USED[metric]] || [], borderColor: "#06b6d4", backgroundColor: "#06b6d4", tension: 0.25, pointRadius: 2 });
    }
    return sets;
  }

  function draw(metric) {
    const config = {
      data: { labels: data.days.map(function (d) { return d.slice(5); }), datasets: datasets(metric) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { beginAtZero: true, ticks: { precision: 2 } }, x: { grid: { display: false } } },
        plugins: { legend: { position: "bottom" } },
      },
    };
    if (chart) chart.destroy();
    chart = new window.Chart(canvas, config);
    canvas.dataset.metric = metric;
  }

  draw(select ? select.value : "vcpu_hours");
  if (select) select.addEventListener("change", function () { draw(select.value); });
})();
