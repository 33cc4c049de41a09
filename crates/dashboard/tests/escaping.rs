//! Stripe data and user-entered text are escaped on every page that shows them.

mod common;

use std::collections::BTreeMap;

use cls_control::{RunError, RunStatus, RunUpdate, TypeStats};
use common::{client, spawn_app, FULL_KEY, SECRET_KEY};

const SCRIPT: &str = "<script>alert(1)</script>";
const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

#[tokio::test]
async fn script_tags_from_stripe_and_from_people_render_as_text() {
    let app = spawn_app(4).await;
    let c = client();
    let csrf = app.sign_in(&c).await;

    // A Stripe customer named like an attack, through the emulator's write API.
    let res = reqwest::Client::new()
        .post(format!("{}/v1/customers", app.emulator.base_url))
        .bearer_auth(SECRET_KEY)
        .form(&[("name", SCRIPT), ("email", "x@example.com")])
        .send()
        .await
        .expect("create customer");
    assert!(res.status().is_success(), "{}", res.status());

    // A project and configuration named like one too.
    let db = app.dir.join("dest.db");
    let url = format!("sqlite://{}", db.display());
    app.post_redirect(
        &c,
        "/projects",
        &[
            ("csrf", &csrf),
            ("name", SCRIPT),
            ("kind", "sqlite"),
            ("database_url", &url),
            ("action", "save"),
        ],
    )
    .await;
    let project = app
        .store
        .list_projects(Default::default())
        .await
        .expect("projects")
        .items
        .remove(0);
    let pid = project.id.to_string();
    app.post_redirect(
        &c,
        "/configurations/new",
        &[("csrf", &csrf), ("types", "customers")],
    )
    .await;
    app.post_redirect(
        &c,
        "/configurations/new/project",
        &[("csrf", &csrf), ("project", &pid)],
    )
    .await;
    app.post_redirect(
        &c,
        "/configurations/new/key",
        &[("csrf", &csrf), ("key", FULL_KEY)],
    )
    .await;
    app.post_redirect(
        &c,
        "/configurations/new/tables",
        &[("csrf", &csrf), ("tables", "auto")],
    )
    .await;
    let config = app
        .post_redirect(
            &c,
            "/configurations/new/review",
            &[("csrf", &csrf), ("name", SCRIPT)],
        )
        .await;
    app.post_redirect(&c, &format!("{config}/sync"), &[("csrf", &csrf)])
        .await;
    let run = app
        .runner
        .step()
        .await
        .expect("step")
        .executed
        .expect("executed")
        .run;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.errors);

    // A run whose errors carry Stripe's text (as a failed run records it), and whose stats
    // name a data type with markup.
    app.post_redirect(&c, &format!("{config}/sync"), &[("csrf", &csrf)])
        .await;
    let queued = app
        .store
        .list_runs(run.configuration_id, Default::default())
        .await
        .expect("runs")
        .items
        .into_iter()
        .find(|r| r.status == RunStatus::Queued)
        .expect("queued run");
    let mut stats = BTreeMap::new();
    stats.insert(SCRIPT.to_string(), TypeStats::default());
    app.store
        .update_run(
            queued.id,
            RunUpdate {
                status: Some(RunStatus::Failed),
                started_at: Some(chrono::Utc::now()),
                ended_at: Some(chrono::Utc::now()),
                stats: Some(stats),
                errors: Some(vec![RunError {
                    data_type: Some(SCRIPT.to_string()),
                    message: format!("Stripe said: No such customer: '{SCRIPT}'"),
                }]),
            },
        )
        .await
        .expect("record the failed run");

    // A new wizard lists the projects by name.
    app.post_redirect(
        &c,
        "/configurations/new",
        &[("csrf", &csrf), ("types", "customers")],
    )
    .await;
    let pages = [
        "/".to_string(),
        "/projects".to_string(),
        format!("/projects/{pid}"),
        format!("/projects/{pid}/delete"),
        "/configurations".to_string(),
        config.clone(),
        format!("{config}/runs"),
        format!("{config}/delete"),
        format!("/runs/{}", run.id),
        format!("/runs/{}", queued.id),
        "/configurations/new/project".to_string(),
    ];
    let mut escaped_seen = 0;
    for path in &pages {
        let body = app.get_ok(&c, path).await;
        assert!(
            !body.contains(SCRIPT),
            "{path} renders a script tag from data:\n{body}"
        );
        if body.contains(ESCAPED) {
            escaped_seen += 1;
        }
    }
    // The names were shown (escaped), not dropped.
    assert!(
        escaped_seen >= 8,
        "escaped text seen on {escaped_seen} pages"
    );
    let failed = app.get_ok(&c, &format!("/runs/{}", queued.id)).await;
    assert!(
        failed.contains(&format!(
            "Stripe said: No such customer: &#39;{ESCAPED}&#39;"
        )) || failed.contains(&format!("Stripe said: No such customer: '{ESCAPED}'")),
        "{failed}"
    );
}
