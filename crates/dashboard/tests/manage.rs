//! Managing what exists: live progress of a running run, Cancel, the schedule the system
//! paused and key rotation resuming it, webhook secrets, API keys, switching off and
//! deleting.

mod common;

use std::collections::BTreeMap;

use cls_control::{
    Cadence, Configuration, Every, NewConfiguration, NewProject, NewRun, NewSchedule, Project,
    RunStatus, SyncMode, Trigger, TypeStats,
};
use cls_destination::DatabaseUrl;
use cls_stripe::ApiKey;
use common::{client, location, spawn_app, App, FULL_KEY, LIMITED_KEY};

async fn configuration(app: &App, key: &str) -> (Project, Configuration) {
    let url = format!("sqlite://{}", app.dir.join("dest.db").display());
    let project = app
        .store
        .create_project(NewProject {
            name: "Warehouse".into(),
            database_url: DatabaseUrl::parse(&url).expect("url"),
            schema: None,
        })
        .await
        .expect("project");
    let types = ["customers", "invoices"]
        .iter()
        .filter_map(|t| cls_catalog::find(t))
        .collect();
    let c = app
        .store
        .create_configuration(NewConfiguration {
            name: "Billing".into(),
            project_id: project.id,
            key: ApiKey::parse(key).expect("key"),
            data_types: types,
            stripe_api_base: None,
            webhook_secret: None,
        })
        .await
        .expect("configuration");
    (project, c)
}

#[tokio::test]
async fn a_running_run_shows_live_counts_and_can_be_canceled() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (_, config) = configuration(&app, FULL_KEY).await;

    // A worker claims a run and reports live counts with its heartbeat.
    app.store
        .queue_run(NewRun {
            configuration_id: config.id,
            trigger: Trigger::Manual,
            mode: SyncMode::Full,
        })
        .await
        .expect("queue");
    let now = chrono::Utc::now();
    let run = app
        .store
        .claim_next_run(now, "worker-1", chrono::Duration::seconds(60))
        .await
        .expect("claim")
        .expect("a run to claim");
    let mut stats = BTreeMap::new();
    stats.insert(
        "customers".to_string(),
        TypeStats {
            objects: 1234,
            requests: 13,
            rate_limited: 2,
            ..TypeStats::default()
        },
    );
    app.store
        .heartbeat(run.id, "worker-1", now, Some(stats))
        .await
        .expect("heartbeat");

    let progress: serde_json::Value = c
        .get(app.url(&format!("/configurations/{}/progress", config.id)))
        .send()
        .await
        .expect("progress")
        .json()
        .await
        .expect("json");
    assert_eq!(progress["status"], "running");
    assert_eq!(progress["finished"], false);
    assert_eq!(progress["types"][0]["data_type"], "customers");
    assert_eq!(progress["types"][0]["objects"], 1234);
    assert_eq!(progress["types"][0]["rate_limited"], 2);
    assert_eq!(progress["types"][1]["objects"], 0);

    let page = app
        .get_ok(&c, &format!("/configurations/{}", config.id))
        .await;
    assert!(page.contains("data-live=\"true\""), "{page}");
    assert!(
        page.contains("1234 objects · 13 requests · 2 × 429"),
        "{page}"
    );
    let run_progress: serde_json::Value = c
        .get(app.url(&format!("/runs/{}/progress", run.id)))
        .send()
        .await
        .expect("run progress")
        .json()
        .await
        .expect("json");
    assert_eq!(run_progress["types"][0]["objects"], 1234);

    // Cancel asks the worker to stop at its next checkpoint.
    let detail = app.get_ok(&c, &format!("/runs/{}", run.id)).await;
    assert!(detail.contains("Cancel run"));
    let back = app
        .post_redirect(&c, &format!("/runs/{}/cancel", run.id), &[("csrf", &csrf)])
        .await;
    let page = app.get_ok(&c, &back).await;
    assert!(page.contains("Cancel requested"), "{page}");
    let stored = app.store.run(run.id).await.expect("run");
    assert!(stored.cancel_requested);
}

#[tokio::test]
async fn the_systems_pause_reason_shows_and_a_good_new_key_resumes_the_schedule() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (_, config) = configuration(&app, FULL_KEY).await;
    let page_path = format!("/configurations/{}", config.id);
    let schedule = app
        .store
        .create_schedule(NewSchedule {
            configuration_id: config.id,
            cadence: Cadence::Every(Every::Hour),
            mode: SyncMode::Incremental,
        })
        .await
        .expect("schedule");
    let reason = "Stripe rejected the key rk_test_…ator (revoked, expired or rolled): paste a current key, then Test Connection to resume";
    app.store
        .pause_schedule(schedule.id, reason)
        .await
        .expect("pause");
    let page = app.get_ok(&c, &page_path).await;
    assert!(
        page.contains("Paused by the system: Stripe rejected the key rk_test_…ator"),
        "{page}"
    );
    assert!(page.contains("Resume schedule"));

    // A key lacking permissions replaces the old one but resumes nothing, and says why.
    let res = app
        .post(
            &c,
            &format!("{page_path}/key"),
            &[("csrf", &csrf), ("key", LIMITED_KEY)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.expect("body");
    assert!(body.contains("rak_invoice_read"), "{body}");
    assert!(!body.contains(LIMITED_KEY));
    let s = app.store.schedule(schedule.id).await.expect("schedule");
    assert!(
        !s.active,
        "not resumed with a key that cannot read everything"
    );

    // A key that reads everything resumes it.
    let back = app
        .post_redirect(
            &c,
            &format!("{page_path}/key"),
            &[("csrf", &csrf), ("key", FULL_KEY)],
        )
        .await;
    assert_eq!(back, page_path);
    let page = app.get_ok(&c, &page_path).await;
    assert!(page.contains("Key replaced: now rk_test_…ator."), "{page}");
    assert!(page.contains("is resumed"), "{page}");
    let s = app.store.schedule(schedule.id).await.expect("schedule");
    assert!(s.active && s.paused_reason.is_none());

    // Pause by hand, resume by hand.
    app.post_redirect(
        &c,
        &format!("{page_path}/schedule/active"),
        &[("csrf", &csrf), ("active", "false")],
    )
    .await;
    assert!(!app.store.schedule(schedule.id).await.expect("s").active);
    app.post_redirect(
        &c,
        &format!("{page_path}/schedule/active"),
        &[("csrf", &csrf), ("active", "true")],
    )
    .await;
    assert!(app.store.schedule(schedule.id).await.expect("s").active);

    // Removed: back to Sync Now only.
    app.post_redirect(
        &c,
        &format!("{page_path}/schedule/delete"),
        &[("csrf", &csrf)],
    )
    .await;
    let page = app.get_ok(&c, &page_path).await;
    assert!(page.contains("Schedule removed"), "{page}");
    assert!(page.contains("No schedule"), "{page}");
    assert!(app.store.schedule(schedule.id).await.is_err());
}

#[tokio::test]
async fn webhook_secrets_are_set_shown_only_as_set_and_removed() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (_, config) = configuration(&app, FULL_KEY).await;
    let page_path = format!("/configurations/{}", config.id);
    let path = format!("{page_path}/webhook-secret");
    let secret = "whsec_s3cretSigningValue123";

    app.post_redirect(
        &c,
        &path,
        &[
            ("csrf", &csrf),
            ("secret", "sk_test_notawebhooksecret"),
            ("action", "save"),
        ],
    )
    .await;
    let page = app.get_ok(&c, &page_path).await;
    assert!(page.contains("The signing secret was not saved"), "{page}");
    assert!(!page.contains("notawebhooksecret"));

    app.post_redirect(
        &c,
        &path,
        &[("csrf", &csrf), ("secret", secret), ("action", "save")],
    )
    .await;
    let page = app.get_ok(&c, &page_path).await;
    assert!(
        page.contains("Signing secret: <strong>set</strong>"),
        "{page}"
    );
    assert!(!page.contains(secret));
    assert!(page.contains(&format!("/webhooks/stripe/{}", config.id)));
    let stored = app.store.configuration(config.id).await.expect("config");
    assert!(stored.has_webhook_secret());

    app.post_redirect(&c, &path, &[("csrf", &csrf), ("action", "clear")])
        .await;
    let stored = app.store.configuration(config.id).await.expect("config");
    assert!(!stored.has_webhook_secret());
}

#[tokio::test]
async fn api_keys_are_shown_once_and_revoked() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let res = app
        .post(
            &c,
            "/settings/api-keys",
            &[("csrf", &csrf), ("name", "grafana")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.expect("body");
    let start = body.find("value=\"cls_").expect("the new token is shown") + 7;
    let end = body[start..].find('"').expect("end") + start;
    let token = body[start..end].to_string();
    app.store
        .authenticate_api_token(&token)
        .await
        .expect("the shown token works");

    let settings = app.get_ok(&c, "/settings").await;
    assert!(settings.contains("grafana"));
    assert!(!settings.contains(&token), "shown once only");
    assert!(settings.contains("Master key"));

    let id = app
        .store
        .list_api_tokens(Default::default())
        .await
        .expect("tokens")
        .items[0]
        .id;
    // Revoke goes through a confirmation page; only its form (with CSRF) revokes.
    let revoke = format!("/settings/api-keys/{id}/revoke");
    assert!(
        settings.contains(&format!("href=\"{revoke}\"")),
        "{settings}"
    );
    assert!(
        !settings.contains(&format!("action=\"{revoke}\"")),
        "{settings}"
    );
    let confirm = app.get_ok(&c, &revoke).await;
    assert!(
        confirm.contains("Revoke API key &quot;grafana&quot;?"),
        "{confirm}"
    );
    assert!(
        confirm.contains(&format!("action=\"{revoke}\"")) && confirm.contains(&csrf),
        "{confirm}"
    );
    app.store
        .authenticate_api_token(&token)
        .await
        .expect("only looking at the confirmation revokes nothing");
    app.post_redirect(&c, &revoke, &[("csrf", &csrf)]).await;
    let settings = app.get_ok(&c, "/settings").await;
    assert!(settings.contains("revoked"), "{settings}");
    assert!(app.store.authenticate_api_token(&token).await.is_err());
    // Once revoked, the confirmation leads back to the list; an unknown key is a 404.
    let res = c.get(app.url(&revoke)).send().await.expect("confirm again");
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/settings");
    let res = c
        .get(app.url("/settings/api-keys/999/revoke"))
        .send()
        .await
        .expect("unknown key");
    assert_eq!(res.status(), 404);

    let res = app
        .post(&c, "/settings/api-keys", &[("csrf", &csrf), ("name", "  ")])
        .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn switching_off_and_deleting_take_a_confirmation_and_say_what_happens() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (project, config) = configuration(&app, FULL_KEY).await;
    let project_path = format!("/projects/{}", project.id);
    let config_path = format!("/configurations/{}", config.id);

    // A switched-off project pauses its configuration; Sync Now says the run will not go.
    app.post_redirect(
        &c,
        &format!("{project_path}/active"),
        &[("csrf", &csrf), ("active", "false")],
    )
    .await;
    let page = app.get_ok(&c, &config_path).await;
    assert!(page.contains("paused: the project is inactive"), "{page}");
    app.post_redirect(&c, &format!("{config_path}/sync"), &[("csrf", &csrf)])
        .await;
    let page = app.get_ok(&c, &config_path).await;
    assert!(page.contains("activate it first"), "{page}");
    let run = app
        .runner
        .step()
        .await
        .expect("step")
        .executed
        .expect("executed")
        .run;
    assert_eq!(run.status, RunStatus::Canceled);
    app.post_redirect(
        &c,
        &format!("{project_path}/active"),
        &[("csrf", &csrf), ("active", "true")],
    )
    .await;

    // The configuration: off, then deleted after the confirmation page.
    app.post_redirect(
        &c,
        &format!("{config_path}/active"),
        &[("csrf", &csrf), ("active", "false")],
    )
    .await;
    let page = app.get_ok(&c, &config_path).await;
    assert!(
        page.contains("paused: the configuration is inactive"),
        "{page}"
    );
    let confirm = app.get_ok(&c, &format!("{config_path}/delete")).await;
    assert!(confirm.contains("tables already written in your database are left"));
    let to = app
        .post_redirect(&c, &format!("{config_path}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(to, "/configurations");
    let res = c.get(app.url(&config_path)).send().await.expect("gone");
    assert_eq!(res.status(), 404);
    assert!(res.text().await.expect("body").contains("does not exist"));

    // The project.
    let confirm = app.get_ok(&c, &format!("{project_path}/delete")).await;
    assert!(
        confirm.contains("Delete project &quot;Warehouse&quot;?"),
        "{confirm}"
    );
    app.post_redirect(&c, &format!("{project_path}/delete"), &[("csrf", &csrf)])
        .await;
    let list = app.get_ok(&c, "/projects").await;
    assert!(list.contains("Project &quot;Warehouse&quot; deleted."));
    assert!(list.contains("No project yet"));
}

#[tokio::test]
async fn test_connection_on_a_configuration_resumes_what_the_system_paused_only_when_it_passes() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (_, config) = configuration(&app, LIMITED_KEY).await;
    let schedule = app
        .store
        .create_schedule(NewSchedule {
            configuration_id: config.id,
            cadence: Cadence::Every(Every::Day),
            mode: SyncMode::Incremental,
        })
        .await
        .expect("schedule");
    app.store
        .pause_schedule(schedule.id, "the Stripe key lacks rak_invoice_read")
        .await
        .expect("pause");
    let check = format!("/configurations/{}/check", config.id);

    // The limited key still lacks a permission: failed, nothing resumed.
    let res = app.post(&c, &check, &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.expect("body");
    assert!(body.contains("Connection test failed"), "{body}");
    assert!(body.contains("rak_invoice_read"), "{body}");
    assert!(body.contains("Reached SQLite"), "{body}");
    assert!(!app.store.schedule(schedule.id).await.expect("s").active);

    // The permission granted (here: a key that has it): passed, resumed.
    app.store
        .update_configuration(
            config.id,
            cls_control::ConfigurationPatch {
                key: Some(ApiKey::parse(FULL_KEY).expect("key")),
                ..Default::default()
            },
        )
        .await
        .expect("new key");
    let res = app.post(&c, &check, &[("csrf", &csrf)]).await;
    let body = res.text().await.expect("body");
    assert!(body.contains("Connection test passed."), "{body}");
    assert!(body.contains("is resumed"), "{body}");
    let s = app.store.schedule(schedule.id).await.expect("s");
    assert!(s.active && s.paused_reason.is_none());

    // A schedule a person paused stays paused.
    app.store
        .update_schedule(
            schedule.id,
            cls_control::SchedulePatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("pause by hand");
    let body = app
        .post(&c, &check, &[("csrf", &csrf)])
        .await
        .text()
        .await
        .expect("body");
    assert!(body.contains("Connection test passed."));
    assert!(!app.store.schedule(schedule.id).await.expect("s").active);
}

#[tokio::test]
async fn test_connection_fails_where_cls_may_not_create_tables_and_shows_the_sql() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (project, config) = configuration(&app, FULL_KEY).await;
    // Creates the file, then points the project at it read-only.
    let made = cls_control::check_database(
        &project.database_url,
        &project.schema,
        &[],
        std::time::Duration::from_secs(30),
    )
    .await;
    assert!(made.is_ok_and(|d| d.passed()));
    let read_only = format!("sqlite://{}?mode=ro", app.dir.join("dest.db").display());
    app.store
        .update_project(
            project.id,
            cls_control::ProjectPatch {
                database_url: Some(DatabaseUrl::parse(&read_only).expect("url")),
                ..Default::default()
            },
        )
        .await
        .expect("read-only");
    let schedule = app
        .store
        .create_schedule(NewSchedule {
            configuration_id: config.id,
            cadence: Cadence::Every(Every::Day),
            mode: SyncMode::Incremental,
        })
        .await
        .expect("schedule");
    app.store
        .pause_schedule(schedule.id, "the database refused to create tables")
        .await
        .expect("pause");

    let check = format!("/configurations/{}/check", config.id);
    let body = app
        .post(&c, &check, &[("csrf", &csrf)])
        .await
        .text()
        .await
        .expect("body");
    // The key reads everything, but a ✗ on the database is never a pass.
    assert!(body.contains("Connection test failed"), "{body}");
    assert!(body.contains("CREATE TABLE"), "{body}");
    assert!(!app.store.schedule(schedule.id).await.expect("s").active);
}

#[tokio::test]
async fn stripe_connect_is_switched_on_and_off_from_the_configuration_page() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;
    let (_, config) = configuration(&app, FULL_KEY).await;
    let page_path = format!("/configurations/{}", config.id);
    let path = format!("{page_path}/connected-accounts");
    let page = app.get_ok(&c, &page_path).await;
    assert!(page.contains("Also sync connected accounts"), "{page}");
    assert!(
        !app.store
            .configuration(config.id)
            .await
            .expect("config")
            .include_connected_accounts
    );

    app.post_redirect(&c, &path, &[("csrf", &csrf), ("active", "true")])
        .await;
    assert!(
        app.store
            .configuration(config.id)
            .await
            .expect("config")
            .include_connected_accounts
    );
    let page = app.get_ok(&c, &page_path).await;
    assert!(page.contains("Stop syncing connected accounts"), "{page}");
    assert!(
        page.contains("connected accounts the key reaches are synced too"),
        "{page}"
    );

    app.post_redirect(&c, &path, &[("csrf", &csrf), ("active", "false")])
        .await;
    assert!(
        !app.store
            .configuration(config.id)
            .await
            .expect("config")
            .include_connected_accounts
    );
}
