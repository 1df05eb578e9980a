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


def axe_violations(page, *, include: str | None = None) -> list[dict]:
    """Run axe-core on the page as it is now; return the serious and critical violations."""
    if not AXE.exists():
        pytest.fail(f"axe-core missing at {AXE}: run scripts/assets.sh (npm ci)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async ([tags, include]) => {
            // Check the page from its top: scrolled, the sticky top bar lies over whatever
            // is under it at that moment, which says nothing about the page's targets.
            window.scrollTo({top: 0, left: 0, behavior: 'instant'});
            // Let work queued at load (timers, frames) finish: check the page as shown.
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            const context = include ? {include: [include]} : document;
            const r = await axe.run(context, {runOnly: {type: 'tag', values: tags},
                                              resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(' '),
                                          summary: n.failureSummary}))}));
        }""",
        [TAGS, include],
    )
    return [v for v in result if v["impact"] in BLOCKING]


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
