/**
 * The dashboard in a real browser (issue 23's acceptance): Debian's Chromium driven by
 * playwright-core, against a real daemon serving the page, with shell and fake-`claude` agents.
 *
 * Each test waits for what the page must show (a selector with its text) under a deadline; none
 * sleeps. They skip, saying why, where there is no Chromium (`.ci/run` installs it). A failing
 * test leaves a screenshot of the page in `test-output/browser/`. `UPDATE_SCREENSHOT=1` also
 * takes the README's picture, `docs/dashboard.png`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect } from "vitest"
import { useFakeClaude } from "../support/fakeClaude.js"
import { records, trigger, useProjects } from "../support/project.js"
import {
  agentCard,
  DASHBOARD,
  DOCS_SCREENSHOT,
  gone,
  openDashboard,
  pageTest,
  shown,
  startDashboard,
  useBrowser,
  whyNoBrowser
} from "./support/browser.js"

const skipReason = whyNoBrowser()
const skip = skipReason !== undefined
if (skip) console.warn(`browser tests skipped: ${skipReason}`)

const projects = useProjects()
const browser = useBrowser(skip)
const test = pageTest(browser, { skip })

describe.skipIf(skip)(skip ? `dashboard in Chromium (skipped: ${skipReason})` : "dashboard in Chromium", () => {
  test("shows agents going busy with live progress, then idle, without a reload", async ({ page, problems }) => {
    const p = projects.make({ ...DASHBOARD, RESOURCE_SAMPLE_INTERVAL: "1" })
    useFakeClaude(p)
    await openDashboard(page, await startDashboard(p))
    await shown(page, "#agents-empty")
    // A mark that a reload would wipe.
    await page.evaluate("window.mark = 42")

    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "scenario=steady sleep=6 every=0.3", { context: { ticket: "52" } }))
    p.drop("qa-engineer-work-1", trigger("qa-engineer", "scenario=steady sleep=6 every=0.3"))

    const a = await agentCard(page, "junior-dev-a", "busy")
    await agentCard(page, "qa-engineer", "busy")
    await shown(page, "#stat-busy", "2")
    expect(await a.textContent()).toContain("junior-dev-a-work-1.trigger")
    expect(await a.textContent()).toContain("52")
    // Live progress from the agent's stream-json output.
    await a.locator("dd", { hasText: "Bash" }).waitFor()
    await a.locator("dd", { hasText: /^[1-9]\d* · / }).waitFor()
    // The running time ticks.
    const before = await a.locator(".elapsed").textContent()
    await a.locator(".elapsed", { hasNotText: new RegExp(`^${before}$`) }).waitFor({ timeout: 5_000 })

    // Both finish: idle cards, their attempts listed as successes, the counts moved.
    await agentCard(page, "junior-dev-a", "idle")
    await agentCard(page, "qa-engineer", "idle")
    await shown(page, '#attempts tr[data-trigger="junior-dev-a-work-1.trigger"][data-outcome="success"]')
    await shown(page, '#attempts tr[data-trigger="qa-engineer-work-1.trigger"][data-outcome="success"]')
    await shown(page, '#agents [data-agent="junior-dev-a"]', "success")
    await shown(page, "#stat-done", "2")
    expect(await page.evaluate("window.mark")).toBe(42)
    expect(problems).toEqual([])
  })

  test("a waiting trigger shows why it waits, also in a narrow window", async ({ page, problems }) => {
    const p = projects.make(DASHBOARD)
    await openDashboard(page, await startDashboard(p))
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=6"))
    await agentCard(page, "junior-dev-a", "busy")
    p.drop("junior-dev-a-work-2", trigger("junior-dev-a", "sleep=0.1"))

    const row = await shown(page, '#queue tr[data-trigger="junior-dev-a-work-2.trigger"]', "junior-dev-a is busy")
    expect(await row.textContent()).toContain("junior-dev-a-work-1")
    expect(await row.locator(".badge").textContent()).toBe("agent busy")
    await shown(page, "#stat-waiting", "1")

    // A phone-sized window: one column, nothing wider than the screen, the reason still there.
    await page.setViewportSize({ width: 380, height: 800 })
    await row.waitFor()
    expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(380)

    // The second trigger runs once the first ends, and leaves the list.
    await gone(page, '#queue tr[data-trigger="junior-dev-a-work-2.trigger"]', 30_000)
    await shown(page, '#attempts tr[data-trigger="junior-dev-a-work-2.trigger"][data-outcome="success"]', undefined, 30_000)
    await shown(page, "#queue-empty")
    expect(problems).toEqual([])
  })

  test("a trigger that failed every attempt appears in the DLQ; Delete asks first; Retry puts it back in the queue", async ({ page, problems }) => {
    const p = projects.make({ ...DASHBOARD, MAX_RETRIES: "1" })
    await openDashboard(page, await startDashboard(p))
    p.drop("qa-engineer-broken", trigger("qa-engineer", "exit=3"))
    p.drop("docs-writer-broken", trigger("docs-writer", "exit=4"))

    // Delete asks first: refused, the entry stays; confirmed, it is gone for good.
    const doomed = '#dlq [data-name="docs-writer-broken.trigger"]'
    await shown(page, doomed, "exited with code 4")
    page.once("dialog", (d) => void d.dismiss())
    await page.getByRole("button", { name: "Delete docs-writer-broken.trigger" }).click()
    await shown(page, "#stat-dlq", "2")
    page.once("dialog", (d) => void d.accept())
    await page.getByRole("button", { name: "Delete docs-writer-broken.trigger" }).click()
    await gone(page, doomed)
    expect(fs.existsSync(path.join(p.triggers, "dead-letter", "docs-writer-broken.trigger"))).toBe(false)

    const entry = await shown(page, '#dlq [data-name="qa-engineer-broken.trigger"]')
    expect(await entry.textContent()).toContain("qa-engineer")
    expect(fs.existsSync(path.join(p.triggers, "dead-letter", "qa-engineer-broken.trigger"))).toBe(true)
    await shown(page, '#attempts tr[data-trigger="qa-engineer-broken.trigger"][data-outcome="failed"]')
    await shown(page, "#stat-dlq", "1")

    // Keep the agent busy, so the retried trigger waits in the queue where the page shows it.
    p.drop("qa-engineer-long", trigger("qa-engineer", "sleep=60"))
    await agentCard(page, "qa-engineer", "busy")
    await page.getByRole("button", { name: "Retry qa-engineer-broken.trigger" }).click()

    await gone(page, '#dlq [data-name="qa-engineer-broken.trigger"]')
    await shown(page, "#dlq-empty")
    await shown(page, '#queue tr[data-trigger="qa-engineer-broken.trigger"]', "qa-engineer is busy")
    await shown(page, "#stat-dlq", "0")
    expect(fs.existsSync(path.join(p.triggers, "qa-engineer-broken.trigger"))).toBe(true)
    expect(fs.existsSync(path.join(p.triggers, "dead-letter", "qa-engineer-broken.trigger"))).toBe(false)
    expect(problems).toEqual([])
  })

  test("the form checks its fields and queues a trigger that runs", async ({ page, problems }) => {
    const p = projects.make(DASHBOARD)
    await openDashboard(page, await startDashboard(p))
    const submit = page.getByRole("button", { name: "Queue trigger" })

    // Checked in the page: nothing is sent.
    await submit.click()
    await shown(page, "#f-agent-error", "Enter the agent")
    await shown(page, "#f-action-error", "Enter what the agent should do")
    expect(await page.locator("#f-agent").getAttribute("aria-invalid")).toBe("true")
    await page.getByLabel("Agent", { exact: true }).fill("-bad/name")
    await page.getByLabel("Action").fill("implement_ticket")
    await submit.click()
    await shown(page, "#f-agent-error", "not starting with '.' or '-'")
    expect(await page.locator("#f-action-error").textContent()).toBe("")

    // Checked by the server: its one-line reason goes under the field it names.
    await page.getByLabel("Agent", { exact: true }).fill("junior-dev-b")
    // A value the page's own select does not offer, as a hand-made request could send.
    await page.evaluate(`(() => {
      const select = document.querySelector("#f-priority")
      select.append(new Option("urgent", "urgent"))
      select.value = "urgent"
    })()`)
    await submit.click()
    await shown(page, "#f-priority-error", "priority")
    expect(fs.readdirSync(p.triggers).filter((n) => n.endsWith(".trigger"))).toEqual([])

    await page.locator("#f-priority").selectOption("high")
    await page.getByLabel("Ticket").fill("77")
    await page.getByLabel("Message").fill("sleep=1.5")
    await submit.click()
    await shown(page, "#form-status", "Queued")
    expect(await page.locator("#f-priority-error").textContent()).toBe("")

    const card = await agentCard(page, "junior-dev-b", "busy")
    expect(await card.textContent()).toContain("77")
    await agentCard(page, "junior-dev-b", "idle")
    await shown(page, '#attempts tr[data-outcome="success"]', "junior-dev-b")

    const history = await p.cli(["history", "--json"])
    const rows = JSON.parse(history.stdout) as Array<{ agent: string; ticket: string | null; outcome: string }>
    expect(rows).toEqual([expect.objectContaining({ agent: "junior-dev-b", ticket: "77", outcome: "success" })])
    const started = records(p).filter((r) => r.kind === "start")
    expect(started.map((r) => r.agent)).toEqual(["junior-dev-b"])
    expect(problems).toEqual([])
  })

  test("the log view follows the chosen agent's log", async ({ page, problems }) => {
    const p = projects.make(DASHBOARD)
    await openDashboard(page, await startDashboard(p))
    p.drop("qa-engineer-work-1", trigger("qa-engineer", "sleep=3"))
    const card = await agentCard(page, "qa-engineer", "busy")
    await card.getByRole("button", { name: "View the log of qa-engineer" }).click()
    expect(await page.locator("#log-agent").inputValue()).toBe("qa-engineer")
    await shown(page, "#log-view", "agent qa-engineer running: sleep=3")
    // The end of the attempt reaches the view without a click.
    await shown(page, "#log-view", /Completed|Exit code/)
    // The daemon's own events, as they came.
    await page.locator("#log-agent").selectOption("")
    await shown(page, "#log-view", "qa-engineer-work-1")
    expect(problems).toEqual([])
  })

  test("keeps its session without the token in the address, and says clearly when the daemon stops answering", async ({ page }) => {
    const p = projects.make(DASHBOARD)
    await openDashboard(page, await startDashboard(p))
    // The token set the session cookie and left the address bar (history, bookmarks, screen shares).
    expect(page.url()).not.toContain("token")
    await page.reload()
    await page.locator("#conn[data-state=live]").waitFor()
    await shown(page, "#daemon[data-state=running]", "Running")

    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
    await shown(page, "#conn[data-state=disconnected]", "Disconnected")
    await page.getByRole("button", { name: "Reconnect now" }).waitFor()
  })

  // The README's picture: only on demand, so a normal run leaves the tree as it was.
  test("takes the README's screenshot (only with UPDATE_SCREENSHOT=1)", async ({ page }) => {
    const p = projects.make({ ...DASHBOARD, MAX_RETRIES: "1", RESOURCE_SAMPLE_INTERVAL: "1", MAX_CONCURRENT_AGENTS: "4" })
    useFakeClaude(p)
    seedHistory(p.claude)
    await openDashboard(page, await startDashboard(p))
    p.drop("docs-writer-update-readme", trigger("docs-writer", "scenario=success exit=2", { context: { ticket: "48" } }))
    p.drop("reviewer-pr-160", trigger("reviewer", "scenario=success", { context: { ticket: "47" } }))
    await shown(page, '#dlq [data-name="docs-writer-update-readme.trigger"]')
    await agentCard(page, "reviewer", "idle")
    p.drop("junior-dev-a-ticket-52", trigger("junior-dev-a", "scenario=steady sleep=300 every=1.2", { context: { ticket: "52" } }))
    p.drop("junior-dev-b-ticket-53", trigger("junior-dev-b", "scenario=steady sleep=300 every=0.8", { context: { ticket: "53" } }))
    p.drop("qa-engineer-pr-161", trigger("qa-engineer", "scenario=steady sleep=300 every=2", { context: { ticket: "161" } }))
    p.drop("junior-dev-a-ticket-54", trigger("junior-dev-a", "scenario=steady sleep=1", { context: { ticket: "54" } }))
    await shown(page, '#queue tr[data-trigger="junior-dev-a-ticket-54.trigger"]', "is busy")
    for (const agent of ["junior-dev-a", "junior-dev-b", "qa-engineer"]) {
      const card = await agentCard(page, agent, "busy")
      await card.locator("dd", { hasText: /^([3-9]|\d\d+) · / }).waitFor({ timeout: 30_000 })
      await card.locator("dd", { hasText: /^\d+%$/ }).waitFor()
    }
    await page.locator("#log-agent").selectOption("junior-dev-b")
    await shown(page, "#log-view", "tool_use")
    await page.setViewportSize({ width: 1400, height: 1000 })
    fs.mkdirSync(path.dirname(DOCS_SCREENSHOT), { recursive: true })
    await page.screenshot({ path: DOCS_SCREENSHOT, fullPage: true })
    expect(fs.statSync(DOCS_SCREENSHOT).size).toBeGreaterThan(10_000)
  }, { skip: process.env["UPDATE_SCREENSHOT"] !== "1" })
})

/**
 * Attempts of the earlier hours, as the daemon writes them, so the picture's chart has a day
 * behind it (the attempts the test runs add to the last hour).
 */
const seedHistory = (claude: string) => {
  const agents = ["junior-dev-a", "junior-dev-b", "qa-engineer", "reviewer"]
  const now = Date.now()
  const lines: Array<string> = []
  let n = 0
  for (let hoursAgo = 22; hoursAgo >= 1; hoursAgo--) {
    const count = [1, 2, 3, 2, 4, 1, 0, 2, 3, 5, 4, 2][hoursAgo % 12]!
    for (let i = 0; i < count; i++) {
      n++
      const agent = agents[n % agents.length]!
      const end = now - hoursAgo * 3_600_000 + i * 600_000
      const start = end - (120 + ((n * 37) % 900)) * 1000
      const failed = n % 7 === 3
      lines.push(JSON.stringify({
        trigger: `${agent}-ticket-${n}.trigger`,
        agent,
        attempt: 1,
        start: new Date(start).toISOString(),
        end: new Date(end).toISOString(),
        outcome: failed ? "failed" : "success",
        exit_code: failed ? 1 : 0,
        signal: null,
        log: path.join(claude, "logs", `${agent}-${Math.floor(start / 1000)}.log`),
        ticket: String(n),
        trace_id: null,
        peak_rss_bytes: null,
        cpu_seconds: null,
        session_id: `sess-${n}`,
        resumed_session: null,
        cost_usd: Math.round((0.05 + ((n * 53) % 40) / 100) * 10_000) / 10_000,
        turns: 3 + (n % 9),
        tokens_in: 1_000 + n * 37,
        tokens_out: 200 + n * 11
      }))
    }
  }
  fs.mkdirSync(path.join(claude, "daemon"), { recursive: true })
  fs.writeFileSync(path.join(claude, "daemon", "history.jsonl"), lines.join("\n") + "\n")
}
