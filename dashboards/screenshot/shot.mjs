// Screenshots of Superset dashboards in headless Chromium, each checked to render: every
// chart drawn, no error panel, Chinese glyphs drawn as glyphs rather than empty boxes.
// Usage: SUPERSET_PASSWORD=... node shot.mjs <url> <user> <out dir> <slug> [<slug> ...]
// Prints one JSON line per dashboard.
import { chromium } from "playwright-core";

const [url, user, outDir, ...slugs] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1200 }, locale: "zh-CN" });
// A refused login lands back on `/login/?next=…`. In CI one accepted login did too: Superset
// sent the browser on to its welcome page, which found no session and sent it back to
// `/login/?next=%2Fsuperset%2Fwelcome%2F`. Sessions live in a cookie every response may
// rewrite, and the login page posts a log beacon as it unloads; its answer sets the session
// from before the login (seen with curl), and most likely landed last. That race is
// Superset's, so a refusal is seen at once, what the page said is kept, and the form is sent
// again (twice at most) before the run gives up with every message.
async function logIn(attempts = 3) {
  const refusals = [];
  for (let attempt = 1; attempt <= attempts; attempt++) {
    await page.goto(`${url}/login/`, { waitUntil: "networkidle" });
    await page.fill("#username, input[name=username]", user);
    const password = page.locator("#password, input[name=password]");
    await password.fill(process.env.SUPERSET_PASSWORD);
    await Promise.all([
      page.waitForURL((u) => !u.pathname.startsWith("/login") || u.searchParams.has("next"), { timeout: 60_000 }),
      password.press("Enter"),
    ]);
    if (!new URL(page.url()).pathname.startsWith("/login")) {
      for (const refusal of refusals) console.error(`login ${refusal}`); // logged by screenshots.py
      return;
    }
    await page.waitForTimeout(1000); // the refusal's toast
    const said = await page.locator("[role='alert'], .ant-message, .toast, [data-test='toast-container']").allInnerTexts();
    refusals.push(`attempt ${attempt}: refused at ${page.url()}: ${said.join(" / ").trim() || "no message shown"}`);
    // While this flag is set the login page warns again on load and clears the password.
    await page.evaluate(() => sessionStorage.removeItem("login_attempted"));
    await page.waitForTimeout(2000 * attempt);
  }
  throw new Error(`could not log in to Superset as ${user}:\n${refusals.join("\n")}`);
}
await logIn();

// Two different Chinese characters drawn in the page's own font: with no CJK font both are
// the same empty box, pixel for pixel.
const cjkGlyphsDiffer = () =>
  page.evaluate(() => {
    const family = getComputedStyle(document.body).fontFamily;
    const draw = (text) => {
      const canvas = document.createElement("canvas");
      canvas.width = 64;
      canvas.height = 64;
      const context = canvas.getContext("2d");
      context.font = `48px ${family}`;
      context.fillText(text, 4, 52);
      return Array.from(context.getImageData(0, 0, 64, 64).data).join(",");
    };
    return draw("客") !== draw("户");
  });

for (const slug of slugs) {
  await page.goto(`${url}/superset/dashboard/${slug}/?standalone=1`, { waitUntil: "networkidle" });
  const deadline = Date.now() + 90_000;
  let charts = 0;
  let loading = 1;
  while (Date.now() < deadline) {
    charts = await page.locator(".dashboard-component-chart-holder").count();
    loading = await page.locator(".loading, [data-test='loading-indicator'], .ant-skeleton").count();
    if (charts > 0 && loading === 0) break;
    await page.waitForTimeout(500);
  }
  await page.waitForTimeout(1500); // echarts animates its first draw
  const errors = await page
    .locator("[data-test='error-message'], .alert-danger, .ant-alert-error, [role='alert']")
    .allInnerTexts();
  const title = await page.locator("[data-test='editable-title'], .dashboard-header h1, .header-title").first().innerText().catch(() => "");
  const path = `${outDir}/${slug}.png`;
  await page.screenshot({ path, fullPage: true });
  console.log(
    JSON.stringify({ slug, path, title, charts, still_loading: loading, errors, cjk_glyphs: await cjkGlyphsDiffer() }),
  );
}
await browser.close();
