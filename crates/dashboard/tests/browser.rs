//! The newcomer's path in a real browser (headless Chromium through chromedriver), at a
//! desktop width (1280 px) and a phone width (375 px): sign in, create a project, create a
//! configuration (first with a restricted key lacking a permission, then with a full one),
//! Test Connection, Sync Now, watch the run finish, open the history and the run, then the
//! pages around them (configurations, project edit, delete confirmations, settings). Every
//! page is saved whole (not only the viewport) to `target/screenshots/`.
//!
//! Needs `chromedriver` and Chromium (Debian: `apt-get install -y chromium
//! chromium-driver`), or `CHROMEDRIVER=/path/to/chromedriver`. Without them the test FAILS
//! saying so: it never skips.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine as _;
use common::{spawn_app, App, FULL_KEY, LIMITED_KEY};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// The tallest screenshot taken, in CSS pixels: a longer page is cut there.
const MAX_SHOT_HEIGHT: u64 = 6000;

/// A Chrome DevTools Protocol command, sent through chromedriver's `goog/cdp/execute`
/// (WebDriver screenshots hold only the viewport).
#[derive(Debug)]
struct Cdp {
    /// The command, e.g. `Page.captureScreenshot`.
    cmd: &'static str,
    /// Its parameters.
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (Method::POST, Some(body.to_string()))
    }
}

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_chromedriver() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMEDRIVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("chromedriver");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "chromedriver was not found on PATH: the browser test needs it. Install Chromium and its \
         driver (Debian: `apt-get install -y chromium chromium-driver`) or set \
         CHROMEDRIVER=/path/to/chromedriver"
    );
}

fn start_driver() -> Driver {
    let exe = find_chromedriver();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port for chromedriver");
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // chromedriver is another process: poll until it listens.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver ({}) did not listen on port {port} within 20 s",
            exe.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

async fn browser(driver: &Driver, width: u32) -> Client {
    let mut chrome = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            format!("--window-size={width},900"),
        ],
    });
    if width < 600 {
        chrome["mobileEmulation"] = json!({
            "deviceMetrics": { "width": width, "height": 812, "pixelRatio": 2.0 }
        });
    }
    if let Some(bin) = std::env::var_os("CHROME_BIN") {
        chrome["binary"] = json!(bin.to_string_lossy());
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver at {} could not start Chromium: {e}. Is the `chromium` package installed (or CHROME_BIN set)?",
                driver.url
            )
        })
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// One browser walking the app at one width.
struct Walk<'a> {
    app: &'a App,
    b: Client,
    width: u32,
    shots: Vec<PathBuf>,
}

impl Walk<'_> {
    async fn goto(&self, path: &str) {
        self.b.goto(&self.app.url(path)).await.expect("goto");
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.b
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no `{selector}` on the page at {} px: {e}", self.width))
    }

    async fn fill(&self, selector: &str, text: &str) {
        let el = self.css(selector).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    async fn click(&self, selector: &str) {
        self.css(selector).await.click().await.expect("click");
    }

    async fn text(&self) -> String {
        self.b.source().await.expect("page source")
    }

    /// The page's whole length as a PNG, up to [`MAX_SHOT_HEIGHT`].
    async fn full_page_png(&self) -> Vec<u8> {
        let height = self
            .b
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .expect("measure the page's height");
        let height = height.as_u64().unwrap_or(0).clamp(1, MAX_SHOT_HEIGHT);
        let shot = self
            .b
            .issue_cmd(Cdp {
                cmd: "Page.captureScreenshot",
                params: json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": self.width, "height": height, "scale": 1 },
                }),
            })
            .await
            .expect("Page.captureScreenshot");
        let data = shot["data"]
            .as_str()
            .unwrap_or_else(|| panic!("Page.captureScreenshot answered without data: {shot}"));
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("a base64 PNG")
    }

    /// Saves a screenshot of the whole page, checks the page does not scroll sideways and
    /// that every form control has a label.
    async fn shot(&mut self, name: &str) {
        let png = self.full_page_png().await;
        let path = screenshots_dir().join(format!("{}-{name}.png", self.width));
        std::fs::write(&path, png).expect("write screenshot");
        self.shots.push(path);
        // Not `window.innerWidth`: with phone emulation Chromium widens the layout viewport
        // to fit wide content, so innerWidth grows with the page and the check could never
        // fail. The width asked for is the yardstick, and `clientWidth` (the viewport
        // without scroll bars) must not have grown past it either.
        let fits = self
            .b
            .execute(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
                vec![],
            )
            .await
            .expect("measure");
        let scroll = fits[0].as_u64().unwrap_or(u64::MAX);
        let client = fits[1].as_u64().unwrap_or(u64::MAX);
        let target = u64::from(self.width);
        let unlabelled = self
            .b
            .execute(
                "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))\
                   .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))\
                   .map(e => e.outerHTML);",
                vec![],
            )
            .await
            .expect("find unlabelled controls");
        assert_eq!(
            unlabelled.as_array().map_or(0, Vec::len),
            0,
            "{name}: form controls without a label: {unlabelled}"
        );
        // A label on an element without a role is not read out; a live region around
        // counters would be read out on every poll.
        let unspoken = self
            .b
            .execute(
                "return Array.from(document.querySelectorAll('span[aria-label], div[aria-label], p[aria-label]'))\
                   .filter(e => !e.getAttribute('role'))\
                   .concat(Array.from(document.querySelectorAll('[aria-live] progress, [role=status] progress')))\
                   .map(e => e.outerHTML);",
                vec![],
            )
            .await
            .expect("find labels not read out");
        assert_eq!(
            unspoken.as_array().map_or(0, Vec::len),
            0,
            "{name}: labels without a role, or progress bars in a live region: {unspoken}"
        );
        // A closed select shows its option cut when the option is wider than the box (the
        // arrow takes about 20 px).
        let cut = self
            .b
            .execute(
                "const ctx = document.createElement('canvas').getContext('2d');\
                 return Array.from(document.querySelectorAll('select')).flatMap(s => {\
                   const st = getComputedStyle(s);\
                   ctx.font = st.font;\
                   const room = s.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight) - 20;\
                   return Array.from(s.options).filter(o => ctx.measureText(o.text).width > room)\
                     .map(o => `#${s.id}: \"${o.text}\" in ${Math.round(room)} px`);\
                 });",
                vec![],
            )
            .await
            .expect("measure the selects");
        assert_eq!(
            cut.as_array().map_or(0, Vec::len),
            0,
            "{name} at {target} px: options cut off: {cut}"
        );
        assert!(
            scroll <= target.min(client) + 1,
            "{name} at {target} px scrolls sideways (content {scroll} px wide, viewport {client} px)"
        );
    }
}

async fn newcomer(driver: &Driver, width: u32) -> Vec<PathBuf> {
    let app = spawn_app(10).await;
    let b = browser(driver, width).await;
    let mut w = Walk {
        app: &app,
        b,
        width,
        shots: Vec::new(),
    };
    // Sign in.
    w.goto("/projects").await;
    w.css("#username").await;
    // The layout viewport is the device's (the page sets `viewport`), not a zoomed-out 980.
    let inner =
        w.b.execute("return window.innerWidth;", vec![])
            .await
            .expect("width");
    assert_eq!(inner.as_u64(), Some(u64::from(width)), "window width");
    w.shot("01-sign-in").await;
    w.fill("#username", "admin").await;
    w.fill("#password", &app.password).await;
    w.click("form.card button[type=submit]").await;
    w.css("header.top").await;
    // Back to the page first asked for.
    assert!(w.text().await.contains("No project yet"));
    w.goto("/").await;
    assert!(w.text().await.contains("Get started"));
    w.shot("02-overview").await;

    // A SQLite project, tested before saving.
    w.goto("/projects/new").await;
    w.fill("#name", "Local analytics").await;
    w.click("#kind option[value=sqlite]").await;
    let db = format!("sqlite://{}", app.dir.join("stripe.db").display());
    w.fill("#database_url", &db).await;
    w.click("button[value=test]").await;
    w.css("div.check").await;
    assert!(w.text().await.contains("Reached SQLite"));
    w.shot("03-project-tested").await;
    w.click("button[value=save]").await;
    w.css("table").await;
    w.shot("04-projects").await;

    // The wizard.
    w.goto("/configurations/new").await;
    w.click("#t-customers").await;
    w.click("#t-invoices").await;
    w.shot("05-data-types").await;
    w.click("form.card button.primary").await;
    w.css("input[name=project]").await;
    w.shot("06-project").await;
    w.click("form.card button.primary").await;

    // Test Connection with a restricted key that lacks rak_invoice_read: the page names the
    // permission and where to add it; then the full key.
    w.fill("#key", LIMITED_KEY).await;
    let helper = w.css("#key-info").await.text().await.expect("helper text");
    assert!(
        helper.contains("Restricted key, test mode."),
        "the key helper reads the prefix: {helper}"
    );
    w.shot("07-key-typed").await;
    w.click("form.card button.primary").await;
    w.css("ul.type-results").await;
    let results = w
        .css("ul.type-results")
        .await
        .text()
        .await
        .expect("type results");
    assert!(
        results.contains("invoices — missing rak_invoice_read")
            && results.contains("Developers → API keys → your restricted key → Edit")
            && results.contains("set Invoices to Read"),
        "the missing permission and where to add it:\n{results}"
    );
    assert!(
        w.text().await.contains("Data types marked ✗ will fail"),
        "the check says the key is not enough"
    );
    w.shot("08-key-lacks-permission").await;
    w.fill("#key", FULL_KEY).await;
    w.click("form.card button.primary").await;
    // Not `ul.type-results`: the previous page has one too.
    w.css("div.check p.ok").await;
    assert!(w
        .text()
        .await
        .contains("Every chosen data type can be read"));
    w.shot("09-test-connection").await;
    w.click("a.button.primary[href='/configurations/new/tables']")
        .await;
    w.css("pre.sql").await;
    w.shot("10-tables").await;
    w.click("form.card button.primary").await;
    w.css("#name").await;
    w.shot("11-review").await;
    w.click("form.card button.primary").await;

    // Sync Now, then the runner; the page's poll notices the end and reloads.
    w.click("div.titlebar button.primary").await;
    w.css("section.progress .badge.queued").await;
    w.shot("12-sync-queued").await;
    let run = app
        .runner
        .step()
        .await
        .expect("runner step")
        .executed
        .expect("a run executed")
        .run;
    assert_eq!(run.status.as_str(), "succeeded", "{:?}", run.errors);
    w.css("section.progress .badge.succeeded").await;
    let customers = run.stats.get("customers").map_or(0, |s| s.objects);
    assert!(customers > 0);
    let page = w.text().await;
    assert!(
        page.contains(&format!("{customers} / ≈{customers} objects")),
        "the reloaded page shows the run's counts:\n{page}"
    );
    // Sync history is near the title, not after a bar per data type.
    let above =
        w.b.execute(
            "return document.querySelector(\"a[href$='/runs']\").getBoundingClientRect().top\
               < document.querySelector('section.progress').getBoundingClientRect().top;",
            vec![],
        )
        .await
        .expect("find Sync history");
    assert_eq!(above, json!(true), "Sync history sits above the progress");
    w.shot("13-synced").await;
    let configuration = w.b.current_url().await.expect("url").path().to_string();

    // Test Connection of the saved configuration.
    w.click("form[action$='/check'] button").await;
    w.css("div.check").await;
    assert!(w.text().await.contains("Connection test passed."));
    w.shot("14-configuration-tested").await;

    // A second run, incremental (what Sync Now offers once data was copied), so the
    // history has a line; then the history, then the first run.
    w.goto(&configuration).await;
    w.click("div.titlebar button.primary").await;
    w.css("section.progress .badge.queued").await;
    let second = app.runner.step().await.expect("runner step").executed;
    let second = second.expect("a second run executed").run;
    assert_eq!(second.status.as_str(), "succeeded", "{:?}", second.errors);
    assert_eq!(second.mode.to_string(), "incremental");
    w.css("section.progress .badge.succeeded").await;
    w.click("a[href$='/runs']").await;
    w.css("figure.chart svg").await;
    // The chart's words are legible at either width (its SVG scales with the page).
    let smallest =
        w.b.execute(
            "return Math.min(...Array.from(document.querySelectorAll('figure.chart svg text'))\
               .map(t => t.getBoundingClientRect().height));",
            vec![],
        )
        .await
        .expect("measure the chart's text");
    let smallest = smallest.as_f64().unwrap_or(0.0);
    assert!(
        smallest >= 12.0,
        "the chart's text is {smallest:.1} px tall at {width} px: too small to read"
    );
    w.shot("15-history").await;
    w.click(&format!("table.runs a[href='/runs/{}']", run.id))
        .await;
    w.css("dl.summary").await;
    let title = w.css("h1").await.text().await.expect("title");
    assert_eq!(title, format!("Sync run #{} succeeded", run.id));
    let per_type = w
        .css("table.per-type")
        .await
        .text()
        .await
        .expect("per data type")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let invoices = run.stats.get("invoices").map_or(0, |s| s.objects);
    assert!(
        per_type.contains(&format!("customers {customers}"))
            && per_type.contains(&format!("invoices {invoices}")),
        "the run's counts per data type:\n{per_type}"
    );
    w.shot("16-run").await;

    // The pages around: the configurations, the project, deleting, settings.
    w.goto("/configurations").await;
    w.css("table").await;
    w.shot("17-configurations").await;
    w.goto("/projects").await;
    w.click("td a[href^='/projects/']").await;
    let kind = w.css("#kind").await.prop("value").await.expect("kind");
    assert_eq!(
        kind.as_deref(),
        Some("sqlite"),
        "edited as the kind it was made"
    );
    w.shot("18-project-edit").await;
    w.click("a.button.danger[href$='/delete']").await;
    w.css("div.danger-zone").await;
    assert!(w.text().await.contains("Delete project"));
    w.shot("19-project-delete").await;
    w.click("div.danger-zone a.button").await;
    w.css("#url-hints").await;
    w.goto("/settings").await;
    w.fill("#key-name", "ci").await;
    w.click("form[action='/settings/api-keys'] button.primary")
        .await;
    w.css("input[aria-label='The new API key']").await;
    let page = w.text().await;
    assert!(
        page.contains("Source: a key generated for this process only"),
        "Settings says where the master key comes from"
    );
    w.shot("20-settings").await;

    // Revoke, after a confirmation; on a phone the button is on screen and the key's
    // prefix on one line.
    let fits =
        w.b.execute(
            "const revoke = document.querySelector(\"a[href$='/revoke']\");\
             const prefix = document.querySelector('.key-list .prefix');\
             return [revoke.getBoundingClientRect().right <= document.documentElement.clientWidth,\
                     prefix.getClientRects().length];",
            vec![],
        )
        .await
        .expect("measure the API keys list");
    assert_eq!(
        fits,
        json!([true, 1]),
        "at {width} px Revoke is on screen and the key prefix on one line"
    );
    w.click("a.button.danger[href$='/revoke']").await;
    w.css("div.danger-zone").await;
    let title = w.css("h1").await.text().await.expect("title");
    assert_eq!(title, "Revoke API key \"ci\"?");
    w.shot("21-revoke-confirm").await;
    w.click("div.danger-zone button.danger").await;
    w.css("ul.key-list .badge").await;
    assert!(w.text().await.contains("API key \"ci\" revoked"));
    w.shot("22-settings-revoked").await;

    let shots = std::mem::take(&mut w.shots);
    w.b.close().await.expect("close browser");
    shots
}

#[tokio::test]
async fn a_newcomer_syncs_in_a_real_browser_on_desktop_and_phone() {
    // Only this run's screenshots in the artifact: a page no longer visited leaves none.
    for old in std::fs::read_dir(screenshots_dir()).expect("list target/screenshots") {
        let old = old.expect("a screenshot").path();
        if old.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(&old).expect("remove an old screenshot");
        }
    }
    let driver = start_driver();
    let mut shots = newcomer(&driver, 1280).await;
    shots.extend(newcomer(&driver, 375).await);
    for s in &shots {
        let len = std::fs::metadata(s).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} is not a real screenshot", s.display());
    }
    assert_eq!(shots.len(), 2 * 22);
}
