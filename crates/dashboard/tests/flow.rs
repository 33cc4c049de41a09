//! The newcomer's path end to end: a project (Test Connection first), the configuration
//! wizard, Sync Now, the runner's step, the sync history — and no secret on any page after
//! it was entered.

mod common;

use common::{client, csrf_of, location, spawn_app, App, FULL_KEY, LIMITED_KEY, SECRET_KEY};

/// Every page body a test fetched, to search for secrets at the end.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    async fn get(&mut self, app: &App, c: &reqwest::Client, path: &str) -> String {
        let body = app.get_ok(c, path).await;
        self.0.push((path.to_string(), body.clone()));
        body
    }

    async fn post_page(
        &mut self,
        app: &App,
        c: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let res = app.post(c, path, form).await;
        let status = res.status().as_u16();
        let body = res.text().await.expect("body");
        self.0.push((format!("POST {path}"), body.clone()));
        (status, body)
    }

    fn assert_nowhere(&self, secret: &str) {
        for (path, body) in &self.0 {
            assert!(
                !body.contains(secret),
                "{path} shows a secret it must only show masked"
            );
        }
    }
}

#[tokio::test]
async fn a_newcomer_goes_from_nothing_to_a_synced_history() {
    let app = spawn_app(12).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let mut seen = Seen::default();

    assert!(seen.get(&app, &c, "/").await.contains("Create a project"));

    // A project whose database is unreachable: Test Connection says so, the password
    // never comes back.
    let pg_password = "pg-s3cret-pw";
    let pg_url = format!("postgres://cls:{pg_password}@127.0.0.1:1/stripe");
    let (status, body) = seen
        .post_page(
            &app,
            &c,
            "/projects",
            &[
                ("csrf", &csrf),
                ("name", "Unreachable"),
                ("kind", "postgres"),
                ("database_url", &pg_url),
                ("schema", "stripe"),
                ("action", "test"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("cls:***@127.0.0.1:1"), "masked URL kept");
    assert!(
        body.contains("class=\"cross\""),
        "the failed check is marked"
    );
    // Save without pasting again: the tested URL was kept server-side.
    let to = app
        .post_redirect(
            &c,
            "/projects",
            &[
                ("csrf", &csrf),
                ("name", "Unreachable"),
                ("kind", "postgres"),
                ("database_url", ""),
                ("schema", "stripe"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(to, "/projects");
    let projects = seen.get(&app, &c, "/projects").await;
    assert!(projects.contains("Unreachable"));

    // A kind that does not match the URL is refused with the fix.
    let (status, body) = seen
        .post_page(
            &app,
            &c,
            "/projects",
            &[
                ("csrf", &csrf),
                ("name", "Mismatch"),
                ("kind", "sqlite"),
                ("database_url", &pg_url),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("pick the matching kind"), "{body}");

    // The SQLite project the data goes to.
    let db = app.dir.join("stripe.db");
    let sqlite_url = format!("sqlite://{}", db.display());
    let (status, body) = seen
        .post_page(
            &app,
            &c,
            "/projects",
            &[
                ("csrf", &csrf),
                ("name", "Local analytics"),
                ("kind", "sqlite"),
                ("database_url", &sqlite_url),
                ("action", "test"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("Reached SQLite"), "{body}");
    let to = app
        .post_redirect(
            &c,
            "/projects",
            &[
                ("csrf", &csrf),
                ("name", "Local analytics"),
                ("kind", "sqlite"),
                ("database_url", &sqlite_url),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(to, "/projects");
    let project_id = app
        .store
        .list_projects(Default::default())
        .await
        .expect("projects")
        .items
        .iter()
        .find(|p| p.name == "Local analytics")
        .map(|p| p.id.0)
        .expect("the project was saved");

    // Wizard step 1: data types, grouped by Dashboard section.
    let step1 = seen.get(&app, &c, "/configurations/new").await;
    assert!(step1.contains("<legend>Customers</legend>"), "{step1}");
    assert!(step1.contains("<legend>Invoices</legend>"));
    // Nothing ticked: refused with the fix.
    let (status, body) = seen
        .post_page(&app, &c, "/configurations/new", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("tick at least one"));
    let to = app
        .post_redirect(
            &c,
            "/configurations/new",
            &[
                ("csrf", &csrf),
                ("types", "invoices"),
                ("types", "customers"),
            ],
        )
        .await;
    assert_eq!(to, "/configurations/new/project");

    // Step 2: the project.
    let step2 = seen.get(&app, &c, "/configurations/new/project").await;
    assert!(step2.contains("Local analytics"));
    let pid = project_id.to_string();
    let to = app
        .post_redirect(
            &c,
            "/configurations/new/project",
            &[("csrf", &csrf), ("project", &pid)],
        )
        .await;
    assert_eq!(to, "/configurations/new/key");

    // Step 3: a malformed key is refused with words, never echoed.
    let (status, body) = seen
        .post_page(
            &app,
            &c,
            "/configurations/new/key",
            &[("csrf", &csrf), ("key", "pk_test_abcdefghijklmnop")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("publishable keys cannot read account data"));
    assert!(!body.contains("pk_test_abcdefghijklmnop"));

    // The limited key: Test Connection names the missing permission and where to grant it.
    let to = app
        .post_redirect(
            &c,
            "/configurations/new/key",
            &[("csrf", &csrf), ("key", LIMITED_KEY)],
        )
        .await;
    assert_eq!(to, "/configurations/new/key");
    let step3 = seen.get(&app, &c, "/configurations/new/key").await;
    assert!(step3.contains("rk_test_…ited"), "masked key shown: {step3}");
    assert!(step3.contains("rak_invoice_read"), "{step3}");
    assert!(
        step3.contains("<strong>Invoices</strong> to Read"),
        "{step3}"
    );
    assert!(
        step3.contains("restricted key, <strong>test mode"),
        "{step3}"
    );

    // A secret key: works, with the warning.
    app.post_redirect(
        &c,
        "/configurations/new/key",
        &[("csrf", &csrf), ("key", SECRET_KEY)],
    )
    .await;
    let step3 = seen.get(&app, &c, "/configurations/new/key").await;
    assert!(step3.contains("is a secret key"), "{step3}");

    // The full restricted key: every type readable.
    app.post_redirect(
        &c,
        "/configurations/new/key",
        &[("csrf", &csrf), ("key", FULL_KEY)],
    )
    .await;
    let step3 = seen.get(&app, &c, "/configurations/new/key").await;
    assert!(
        step3.contains("Every chosen data type can be read"),
        "{step3}"
    );
    assert!(!step3.contains("rak_invoice_read"));

    // Step 4: the tables, with the exact SQL.
    let step4 = seen.get(&app, &c, "/configurations/new/tables").await;
    assert!(step4.contains("CREATE TABLE"), "{step4}");
    assert!(step4.contains("customers"));
    let to = app
        .post_redirect(
            &c,
            "/configurations/new/tables",
            &[("csrf", &csrf), ("tables", "auto")],
        )
        .await;
    assert_eq!(to, "/configurations/new/review");

    // Step 5: review and name.
    let step5 = seen.get(&app, &c, "/configurations/new/review").await;
    assert!(step5.contains("customers, invoices"), "{step5}");
    let to = app
        .post_redirect(
            &c,
            "/configurations/new/review",
            &[("csrf", &csrf), ("name", "Stripe test")],
        )
        .await;
    assert!(to.starts_with("/configurations/"), "{to}");
    let config_page = seen.get(&app, &c, &to).await;
    assert!(
        config_page.contains("its tables are ready"),
        "{config_page}"
    );
    assert!(config_page.contains("Sync Now"));

    // Sync Now queues a run; the page follows it.
    let sync = format!("{to}/sync");
    let back = app.post_redirect(&c, &sync, &[("csrf", &csrf)]).await;
    assert_eq!(back, to);
    let page = seen.get(&app, &c, &to).await;
    assert!(page.contains("queued"), "{page}");
    assert!(
        page.contains("http-equiv=\"refresh\""),
        "no-JS fallback while live"
    );
    let progress: serde_json::Value = c
        .get(app.url(&format!("{to}/progress")))
        .send()
        .await
        .expect("progress")
        .json()
        .await
        .expect("progress json");
    assert_eq!(progress["status"], "queued");
    assert_eq!(progress["finished"], false);

    // The runner executes it.
    let outcome = app.runner.step().await.expect("runner step");
    let run = outcome.executed.expect("a run was executed").run;
    assert_eq!(run.status.as_str(), "succeeded", "{:?}", run.errors);

    // History: succeeded, with the counts per data type (as many customers as the
    // emulator lists) and the chart.
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/customers?limit=100", app.emulator.base_url))
        .bearer_auth(FULL_KEY)
        .send()
        .await
        .expect("emulator customers")
        .json()
        .await
        .expect("customers json");
    let customers = listed["data"].as_array().map_or(0, Vec::len);
    assert!(customers > 0);
    let history = seen.get(&app, &c, &format!("{to}/runs")).await;
    assert!(history.contains("badge succeeded"), "{history}");
    assert!(
        history.contains(&format!("customers <strong>{customers}</strong>")),
        "{history}"
    );
    assert!(history.contains("<svg"), "the chart is drawn");
    assert!(history.contains("manual · full"));
    let detail = seen.get(&app, &c, &format!("/runs/{}", run.id)).await;
    assert!(detail.contains("badge succeeded"));
    assert!(
        !detail.contains("Cancel run"),
        "an ended run cannot be canceled"
    );

    // The page now offers changes-only syncs first.
    let page = seen.get(&app, &c, &to).await;
    assert!(
        page.contains("<option value=\"incremental\" selected>"),
        "{page}"
    );

    // Key rotation: a bad key is refused and the old one kept.
    let rotate = format!("{to}/key");
    app.post_redirect(&c, &rotate, &[("csrf", &csrf), ("key", "rk_test_short")])
        .await;
    let page = seen.get(&app, &c, &to).await;
    assert!(page.contains("The key was not replaced"), "{page}");
    assert!(page.contains("rk_test_…ator"));

    // Schedule: a bad cron expression says how to write one; a good one is saved.
    let schedule = format!("{to}/schedule");
    app.post_redirect(
        &c,
        &schedule,
        &[
            ("csrf", &csrf),
            ("cadence", "cron"),
            ("cron", "every day"),
            ("mode", "incremental"),
        ],
    )
    .await;
    let page = seen.get(&app, &c, &to).await;
    assert!(page.contains("five fields"), "{page}");
    app.post_redirect(
        &c,
        &schedule,
        &[
            ("csrf", &csrf),
            ("cadence", "cron"),
            ("cron", "0 3 * * *"),
            ("mode", "incremental"),
        ],
    )
    .await;
    let page = seen.get(&app, &c, &to).await;
    assert!(page.contains("Syncs <strong>0 3 * * *</strong>"), "{page}");

    // A second Sync Now (changes only), canceled while queued.
    app.post_redirect(&c, &sync, &[("csrf", &csrf), ("mode", "incremental")])
        .await;
    let queued = app
        .store
        .list_runs(run.configuration_id, Default::default())
        .await
        .expect("runs")
        .items
        .into_iter()
        .find(|r| r.status.as_str() == "queued")
        .expect("a queued run");
    let run_page = format!("/runs/{}", queued.id);
    assert!(seen.get(&app, &c, &run_page).await.contains("Cancel run"));
    let back = app
        .post_redirect(&c, &format!("{run_page}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(back, run_page);
    let canceled = seen.get(&app, &c, &run_page).await;
    assert!(canceled.contains("badge canceled"), "{canceled}");
    assert!(canceled.contains("<dd>incremental</dd>"), "{canceled}");

    // Nowhere, after entry: the Stripe keys, the database password.
    for page in ["/", "/projects", "/configurations", "/settings"] {
        seen.get(&app, &c, page).await;
    }
    seen.get(&app, &c, &format!("/projects/{project_id}")).await;
    seen.assert_nowhere(FULL_KEY);
    seen.assert_nowhere(LIMITED_KEY);
    seen.assert_nowhere(SECRET_KEY);
    seen.assert_nowhere(pg_password);
    assert!(seen.0.len() > 20);
    let _ = location;
    let _ = csrf_of;
}

#[tokio::test]
async fn a_project_is_edited_as_the_kind_it_was_created_for() {
    let app = spawn_app(1).await;
    let c = client();
    app.sign_in(&c).await;
    let cases = [
        (
            "Supabase",
            "supabase",
            "postgresql://postgres.abc:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
        ),
        (
            "Neon",
            "neon",
            "postgresql://u:pw@ep-cool-1234-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require",
        ),
        ("Other PostgreSQL", "postgres", "postgres://u:pw@db.example.com/stripe"),
    ];
    for (label, value, url) in cases {
        let p = app
            .store
            .create_project(cls_control::NewProject {
                name: format!("{label} project"),
                database_url: cls_destination::DatabaseUrl::parse(url).expect("url"),
                schema: None,
            })
            .await
            .expect("create project");
        let page = app.get_ok(&c, &format!("/projects/{}", p.id)).await;
        assert!(
            page.contains(&format!(
                "<option value=\"{value}\" selected>{label}</option>"
            )),
            "{label} is the kind selected:\n{page}"
        );
        assert_eq!(page.matches(" selected>").count(), 1, "{page}");
        assert!(
            page.contains(&format!("<li class=\"current\" data-kind=\"{value}\">")),
            "{label}'s hint is the one highlighted:\n{page}"
        );
        let list = app.get_ok(&c, "/projects").await;
        assert!(
            list.contains(&format!("<td>{label}</td>")),
            "the list names the kind:\n{list}"
        );
    }
}
