/**
 * The browser tests' harness: Debian's Chromium (`/usr/bin/chromium`, never a downloaded
 * browser) driven by playwright-core, a daemon serving the dashboard, and the page's waits.
 *
 * Every wait has a deadline shorter than the test's, so a test that fails does so in a wait that
 * names what it waited for, and the screenshot of the page at that moment is written to
 * `test-output/browser/<test name>.png`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Browser, Locator, Page } from "playwright-core"
import { afterAll, beforeAll, it } from "vitest"
import { readText, type TestProject, waitFor } from "../../support/project.js"

const REPO = fileURLToPath(new URL("../../../", import.meta.url))

/** Where failure screenshots go (git-ignored). */
export const OUTPUT_DIR = path.join(REPO, "test-output", "browser")
/** The README's picture of the page. */
export const DOCS_SCREENSHOT = path.join(REPO, "docs", "dashboard.png")

/** Debian's Chromium, or another given by STARFORGE_CHROMIUM. */
export const CHROMIUM = process.env["STARFORGE_CHROMIUM"] || "/usr/bin/chromium"

/** Why the browser tests cannot run here, or undefined when they can. */
export const whyNoBrowser = (): string | undefined => {
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK)
  } catch {
    return `no Chromium at ${CHROMIUM}: install Debian's chromium package (as .ci/run does) or set STARFORGE_CHROMIUM`
  }
  try {
    fs.accessSync(path.join(REPO, "node_modules", "playwright-core", "package.json"))
  } catch {
    return "playwright-core is not installed: run npm install"
  }
  return undefined
}

/** The longest any one wait on the page takes before the test fails (the test itself has more). */
export const WAIT_MS = 25_000

/**
 * One Chromium for the whole file, launched before the first test. Each test gets a new context
 * (its own cookies: a dashboard's session does not leak into the next test's).
 */
export const useBrowser = (skip: boolean) => {
  let browser: Browser | undefined
  beforeAll(async () => {
    if (skip) return
    const { chromium } = await import("playwright-core")
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Containers: a small /dev/shm; root: no sandbox (playwright-core adds --no-sandbox itself).
      args: ["--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--no-default-browser-check"],
      timeout: 60_000
    })
  }, 90_000)
  afterAll(async () => {
    await browser?.close()
  })
  return () => {
    if (!browser) throw new Error("Chromium was not launched")
    return browser
  }
}

export interface PageTest {
  readonly page: Page
  /** Page errors and Content-Security-Policy violations seen so far. */
  readonly problems: Array<string>
}

const fileNameOf = (name: string) => name.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 120)

/** Writes the page as it is to `test-output/browser/<name>.png`; returns the file. */
export const failureScreenshot = async (page: Page, name: string): Promise<string> => {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true })
  const file = path.join(OUTPUT_DIR, `${fileNameOf(name)}.png`)
  await page.screenshot({ path: file, fullPage: true, timeout: 10_000 })
  return file
}

/**
 * `it(name, …)` with a fresh page in a new browser context; on failure, a screenshot of the page
 * to `test-output/browser/<name>.png` (its path added to the error).
 */
export const pageTest = (
  browser: () => Browser,
  options: { skip: boolean; timeoutMs?: number }
) =>
(
  name: string,
  body: (t: PageTest) => Promise<void>,
  only: { skip?: boolean; viewport?: { width: number; height: number } } = {}
) =>
  it.skipIf(options.skip || only.skip === true)(name, async () => {
    const viewport = only.viewport ?? { width: 1280, height: 900 }
    const context = await browser().newContext({ viewport, colorScheme: "light", reducedMotion: "reduce" })
    context.setDefaultTimeout(WAIT_MS)
    const page = await context.newPage()
    const problems: Array<string> = []
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`))
    page.on("console", (m) => {
      if (/Content.Security.Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`)
    })
    try {
      await body({ page, problems })
    } catch (e) {
      const shot = await failureScreenshot(page, name).catch((s: unknown) => `(no screenshot: ${String(s)})`)
      if (e instanceof Error) e.message += `\n  page screenshot: ${shot}`
      throw e
    } finally {
      await context.close().catch(() => undefined)
    }
  }, options.timeoutMs ?? 120_000)

/** Settings every dashboard test's daemon gets: a dashboard on a free loopback port. */
export const DASHBOARD = { DASHBOARD_ADDRESS: "127.0.0.1:0" }

/** `starforge daemon start` (in the background), then the dashboard's URL with its token, from `starforge dashboard`. */
export const startDashboard = async (p: TestProject): Promise<string> => {
  const started = await p.cli(["daemon", "start"])
  if (started.code !== 0) throw new Error(`daemon start failed (${started.code}): ${started.stdout}${started.stderr}`)
  const info = path.join(p.claude, "daemon", "dashboard.json")
  await waitFor(() => readText(info), {
    timeoutMs: 20_000,
    what: `${info} (the daemon's dashboard); daemon.out: ${readText(path.join(p.claude, "logs", "daemon.out")) ?? ""}`
  })
  const shown = await p.cli(["dashboard"])
  const url = /https?:\/\/\S+[?&]token=\S+/.exec(shown.stdout)?.[0]
  if (shown.code !== 0 || url === undefined) {
    throw new Error(`starforge dashboard printed no URL with a token (exit ${shown.code}): ${shown.stdout}${shown.stderr}`)
  }
  return url
}

/** Opens the dashboard and waits until its event stream is live. */
export const openDashboard = async (page: Page, url: string) => {
  await page.goto(url)
  await page.locator("#conn[data-state=live]").waitFor()
}

/** The first element matching `selector` (holding `text`, when given) is visible. */
export const shown = (page: Page, selector: string, text?: string | RegExp, timeout = WAIT_MS): Promise<Locator> => {
  const locator = page.locator(selector).filter(text === undefined ? {} : { hasText: text }).first()
  return locator.waitFor({ state: "visible", timeout }).then(() => locator)
}

/** No element matches `selector` any more. */
export const gone = (page: Page, selector: string, timeout = WAIT_MS): Promise<void> =>
  page.locator(selector).first().waitFor({ state: "detached", timeout })

/** The agent's card once it shows `status`. */
export const agentCard = (page: Page, agent: string, status: "busy" | "idle", timeout = WAIT_MS) =>
  shown(page, `#agents [data-agent="${agent}"][data-status="${status}"]`, undefined, timeout)
