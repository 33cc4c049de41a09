//! The newcomer's path in a real browser (headless Chromium through chromedriver), at a
//! desktop width (1280 px) and a phone width (375 px), saving a screenshot of every step
//! to `target/screenshots/`.
//!
//! Needs `chromedriver` and Chromium (Debian: `apt-get install -y chromium
//! chromium-driver`), or `CHROMEDRIVER=/path/to/chromedriver`. Without them the test FAILS
//! saying so: it never skips.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn_app, App, FULL_KEY};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

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

    /// Saves a screenshot and checks the page does not scroll sideways.
    async fn shot(&mut self, name: &str) {
        let png = self.b.screenshot().await.expect("screenshot");
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
    w.fill("#key", FULL_KEY).await;
    let helper = w.css("#key-info").await.text().await.expect("helper text");
    assert!(
        helper.contains("Restricted key, test mode."),
        "the key helper reads the prefix: {helper}"
    );
    w.shot("07-key-typed").await;
    w.click("form.card button.primary").await;
    w.css("ul.type-results").await;
    assert!(w
        .text()
        .await
        .contains("Every chosen data type can be read"));
    w.shot("08-test-connection").await;
    w.click("a.button.primary[href='/configurations/new/tables']")
        .await;
    w.css("pre.sql").await;
    w.shot("09-tables").await;
    w.click("form.card button.primary").await;
    w.css("#name").await;
    w.shot("10-review").await;
    w.click("form.card button.primary").await;

    // Sync Now, then the runner; the page's poll notices the end and reloads.
    w.click("div.titlebar button.primary").await;
    w.css("section.progress .badge.queued").await;
    w.shot("11-sync-queued").await;
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
    w.shot("12-synced").await;
    w.click("a[href$='/runs']").await;
    w.css("figure.chart svg").await;
    w.shot("13-history").await;

    let shots = std::mem::take(&mut w.shots);
    w.b.close().await.expect("close browser");
    shots
}

#[tokio::test]
async fn a_newcomer_syncs_in_a_real_browser_on_desktop_and_phone() {
    let driver = start_driver();
    let mut shots = newcomer(&driver, 1280).await;
    shots.extend(newcomer(&driver, 375).await);
    for s in &shots {
        let len = std::fs::metadata(s).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} is not a real screenshot", s.display());
    }
    assert_eq!(shots.len(), 26);
}
