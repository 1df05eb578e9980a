"""axe-core in the browser: every page a test visits can be checked for WCAG 2.2 AA.

axe-core comes from npm (package.json) and is injected from node_modules/ by Playwright;
nothing is downloaded when a test runs. ``assert_accessible(page)`` fails with a readable
list of every serious or critical violation (rule, impact, the elements and why).
"""

from __future__ import annotations

from pathlib import Path

import pytest

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0/2.1/2.2 A and AA: the level issue 17 asks for.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = {"serious", "critical"}


_RUN = """async ([tags, include]) => {
    // Check the page as loaded and from its top: scrolled, the sticky top bar lies over
    // whatever is under it at that moment, which says nothing about the page's targets.
    if (document.readyState !== 'complete') {
        await new Promise(r => window.addEventListener('load', r, {once: true}));
    }
    await document.fonts.ready;
    document.documentElement.style.scrollBehavior = 'auto';
    window.scrollTo(0, 0);
    // Let work queued at load (timers, frames) finish: check the page as shown.
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const shape = () => [window.scrollY, document.documentElement.scrollHeight].join();
    const before = shape();
    const context = include ? {include: [include]} : document;
    const r = await axe.run(context, {runOnly: {type: 'tag', values: tags},
                                      resultTypes: ['violations']});
    document.documentElement.style.scrollBehavior = '';
    return {steady: shape() === before && window.scrollY === 0,
            violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(' '),
                                          summary: n.failureSummary}))}))};
}"""


def _run(page, include: str | None) -> tuple[bool, list[dict]]:
    result = page.evaluate(_RUN, [TAGS, include])
    return result["steady"], [v for v in result["violations"] if v["impact"] in BLOCKING]


def _keys(violations: list[dict]) -> set[tuple[str, str]]:
    return {(v["id"], n["target"]) for v in violations for n in v["nodes"]}


def axe_violations(page, *, include: str | None = None) -> list[dict]:
    """Run axe-core on the page as it is now; return the serious and critical violations.

    A page still moving (a live frame re-laid it out, something scrolled it) while axe
    measured is measured again, and a violation counts only when a second look at the
    settled page finds it too: a target "too small" only while a row was being swapped in
    is not one a user meets.
    """
    if not AXE.exists():
        pytest.fail(f"axe-core missing at {AXE}: run scripts/assets.sh (npm ci)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through DevTools, not added as a <script>: the portal's
        # Content-Security-Policy runs no inline script, and add_script_tag makes one.
        page.evaluate(AXE.read_text() + "\n;undefined")
    for _ in range(3):
        steady, violations = _run(page, include)
        if steady:
            break
    if not violations:
        return []
    page.wait_for_timeout(500)
    _, again = _run(page, include)
    kept = _keys(violations) & _keys(again)
    return [
        {**v, "nodes": [n for n in v["nodes"] if (v["id"], n["target"]) in kept]}
        for v in again
        if any((v["id"], n["target"]) in kept for n in v["nodes"])
    ]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']}")
        for node in v["nodes"][:8]:
            summary = (node["summary"] or "").replace("\n", " ")
            lines.append(f"    {node['target']}  -- {summary}")
    return "\n".join(lines)


def assert_accessible(page, label: str = "", *, include: str | None = None) -> None:
    """Fail when axe-core finds a serious or critical WCAG 2.2 AA violation on the page."""
    violations = axe_violations(page, include=include)
    if violations:
        where = label or page.url
        pytest.fail(f"axe-core: {len(violations)} violation(s) on {where}\n{describe(violations)}")
