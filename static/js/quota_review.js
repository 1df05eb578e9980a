// The usage chart of a quota request's review in the admin
// (templates/admin/usage/quotarequest/review.html): the last 30 days from the page's
// json_script block "history-data".
(function () {
  "use strict";

  const source = document.getElementById("history-data");
  const canvas = document.getElementById("history-chart");
  if (!window.Chart || !canvas || !source) return;
  const data = JSON.parse(source.textContent);
  new window.Chart(canvas, {
    data: {
      labels: data.days,
      datasets: [
        { type: "bar", label: "vCPU-hours", data: data.vcpu, backgroundColor: "rgba(79,70,229,.7)" },
        { type: "line", label: "vCPU-hours used", data: data.vcpu_used, borderColor: "#06b6d4", pointRadius: 0 },
        { type: "line", label: "VM-hours", data: data.vm, borderColor: "#f59e0b", pointRadius: 0 },
        { type: "line", label: "Pod-hours", data: data.pod, borderColor: "#16a34a", pointRadius: 0 },
      ],
    },
    options: { responsive: true, maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } }, plugins: { legend: { position: "bottom" } } },
  });
})();
