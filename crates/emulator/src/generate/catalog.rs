//! The account's catalog: products with their prices (recurring and one-time), the plans that
//! mirror recurring prices (Stripe serves a recurring price as a plan with the same id), coupons,
//! promotion codes and tax rates — and some deleted products, prices, plans and coupons.

use super::Gen;
use rand::Rng;
use serde_json::{json, Value};

/// One live price, as the billing generator needs it.
#[derive(Debug, Clone)]
pub struct Price {
    /// `price_…` (also the plan's id when recurring).
    pub id: String,
    /// `prod_…`.
    pub product: String,
    /// Unit amount in cents.
    pub amount: i64,
    /// `month`/`year`, or `None` for one-time prices.
    pub interval: Option<&'static str>,
    /// The price object.
    pub json: Value,
    /// The plan object, for recurring prices.
    pub plan: Option<Value>,
    /// The product's name.
    pub product_name: String,
}

/// What the rest of the generator draws from.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every live, active price.
    pub prices: Vec<Price>,
    /// Indexes into `prices` by kind.
    pub monthly: Vec<usize>,
    /// Yearly recurring prices.
    pub yearly: Vec<usize>,
    /// One-time prices.
    pub one_time: Vec<usize>,
    /// Live coupon ids.
    pub coupons: Vec<String>,
    /// Active tax rate ids.
    pub tax_rates: Vec<String>,
}

const ADJECTIVES: &[&str] = &[
    "Basic",
    "Pro",
    "Team",
    "Business",
    "Enterprise",
    "Starter",
    "Plus",
    "Premium",
    "Growth",
    "Scale",
    "Ultimate",
    "Essential",
    "Advanced",
    "Lite",
];
const NOUNS: &[&str] = &[
    "Analytics",
    "Storage",
    "Seats",
    "Support",
    "Hosting",
    "Backups",
    "Reports",
    "Sync",
    "API access",
    "Monitoring",
    "Email",
    "Workspace",
    "Add-on",
    "Insights",
];

/// Creates the catalog objects and returns what the billing generator needs.
pub fn generate(g: &mut Gen, customers: usize) -> Catalog {
    let mut cat = Catalog::default();
    tax_rates(g, customers, &mut cat);
    // At least 14 products, so a subscription can hold 11+ distinct monthly prices (and its
    // embedded `items` page has has_more).
    let products = 14 + customers / 200;
    let first_year = g.start + 365 * 86_400;
    for i in 0..products {
        // The catalog is mostly built early and grows a little over time.
        let u: f64 = g.rng.gen();
        let created = g.start
            + ((first_year - g.start) as f64 * u * u) as i64
            + (i as i64 % 3) * 86_400 * 200 * (i as i64 % 2);
        let created = created.min(g.anchor - 86_400);
        let name = format!(
            "{} {}",
            ADJECTIVES[i % ADJECTIVES.len()],
            NOUNS[(i / ADJECTIVES.len() + i) % NOUNS.len()]
        );
        product_with_prices(g, &mut cat, created, &name, i < 14);
    }
    deleted_products(g, products / 10 + 2);
    coupons_and_promotions(g, customers, &mut cat);
    cat
}

fn tax_rates(g: &mut Gen, customers: usize, cat: &mut Catalog) {
    const RATES: &[(&str, f64, &str, &str, &str, bool)] = &[
        ("VAT", 19.0, "DE", "DE", "vat", false),
        ("VAT", 20.0, "FR", "FR", "vat", true),
        ("GST", 10.0, "AU", "AU", "gst", true),
        ("Sales Tax", 7.25, "US", "US - CA", "sales_tax", false),
        ("VAT", 20.0, "GB", "GB", "vat", true),
        ("HST", 13.0, "CA", "CA - ON", "hst", false),
        ("VAT", 21.0, "NL", "NL", "vat", false),
        ("VAT", 22.0, "IT", "IT", "vat", true),
    ];
    let n = 6 + customers / 20_000;
    for i in 0..n {
        let (name, pct, country, juris, tax_type, inclusive) = RATES[i % RATES.len()];
        let created = g.time_between(g.start, g.start + 400 * 86_400);
        let id = g.id("txr_");
        let active = i % 7 != 6;
        let v = super::shaped(
            g.mode,
            "tax_rate",
            json!({
                "id": id, "object": "tax_rate", "active": active, "country": country, "created": created,
                "description": format!("{name} {country}"), "display_name": name, "effective_percentage": pct,
                "inclusive": inclusive, "jurisdiction": juris, "percentage": pct, "tax_type": tax_type,
                "rate_type": "percentage",
            }),
        );
        g.put(&v, None, created);
        g.event(created, "tax_rate.created", &v, None);
        if active {
            cat.tax_rates.push(id);
        }
    }
}

fn price_json(
    g: &mut Gen,
    id: &str,
    product: &str,
    created: i64,
    amount: i64,
    interval: Option<&str>,
    active: bool,
) -> Value {
    let recurring = interval.map(|iv| json!({"interval": iv, "interval_count": 1, "meter": null, "trial_period_days": null, "usage_type": "licensed"}));
    let lookup = if g.chance(0.3) {
        Value::String(format!(
            "{}_{}",
            product.to_lowercase(),
            interval.unwrap_or("once")
        ))
    } else {
        Value::Null
    };
    super::shaped(
        g.mode,
        "price",
        json!({
            "id": id, "object": "price", "active": active, "billing_scheme": "per_unit", "created": created,
            "currency": "usd", "custom_unit_amount": null, "lookup_key": lookup, "metadata": {},
            "nickname": interval.map(|i| format!("{i}ly")), "product": product, "recurring": recurring,
            "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
            "type": if interval.is_some() { "recurring" } else { "one_time" },
            "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
        }),
    )
}

fn plan_json(g: &Gen, price: &Value, amount: i64, interval: &str) -> Value {
    super::shaped(
        g.mode,
        "plan",
        json!({
            "id": price["id"], "object": "plan", "active": price["active"], "amount": amount,
            "amount_decimal": amount.to_string(), "billing_scheme": "per_unit", "created": price["created"],
            "currency": "usd", "interval": interval, "interval_count": 1, "metadata": {}, "meter": null,
            "nickname": price["nickname"], "product": price["product"], "tiers_mode": null,
            "transform_usage": null, "trial_period_days": null, "usage_type": "licensed",
        }),
    )
}

fn product_json(
    g: &mut Gen,
    id: &str,
    created: i64,
    name: &str,
    default_price: Option<&str>,
    active: bool,
) -> Value {
    let updated = g.time_between(created, g.anchor - 3600);
    super::shaped(
        g.mode,
        "product",
        json!({
            "id": id, "object": "product", "active": active, "created": created, "default_price": default_price,
            "description": format!("{name}, billed by Codeless Demo"), "images": [], "marketing_features": [],
            "metadata": {"tier": name.split(' ').next().unwrap_or("").to_lowercase()}, "name": name,
            "package_dimensions": null, "shippable": null, "statement_descriptor": null, "tax_code": null,
            "type": "service", "unit_label": null, "updated": updated, "url": null,
        }),
    )
}

fn product_with_prices(
    g: &mut Gen,
    cat: &mut Catalog,
    created: i64,
    name: &str,
    always_yearly: bool,
) {
    let product = g.id("prod_");
    let monthly_amount = g.rng.gen_range(5..=200) * 100;
    let monthly = g.id("price_");
    let mut made: Vec<(String, i64, Option<&'static str>)> =
        vec![(monthly.clone(), monthly_amount, Some("month"))];
    if always_yearly || g.chance(0.5) {
        made.push((g.id("price_"), monthly_amount * 10, Some("year")));
    }
    if g.chance(0.4) {
        made.push((g.id("price_"), g.rng.gen_range(10..=500) * 100, None));
    }
    let pv = product_json(g, &product, created, name, Some(&monthly), true);
    g.put(&pv, None, created);
    g.event(created, "product.created", &pv, None);
    for (id, amount, interval) in made {
        // Prices are usually created in the same second as their product (Dashboard flow).
        let pc = if g.chance(0.7) {
            created
        } else {
            g.time_between(created, g.anchor - 86_400)
        };
        let v = price_json(g, &id, &product, pc, amount, interval, true);
        g.put(&v, None, pc);
        g.event(pc, "price.created", &v, None);
        let plan = interval.map(|iv| {
            let p = plan_json(g, &v, amount, iv);
            g.put(&p, None, pc);
            g.event(pc, "plan.created", &p, None);
            p
        });
        let idx = cat.prices.len();
        match interval {
            Some("month") => cat.monthly.push(idx),
            Some(_) => cat.yearly.push(idx),
            None => cat.one_time.push(idx),
        }
        cat.prices.push(Price {
            id,
            product: product.clone(),
            amount,
            interval,
            json: v,
            plan,
            product_name: name.to_string(),
        });
    }
    // An archived (inactive) old price now and then.
    if g.chance(0.2) {
        let id = g.id("price_");
        let v = price_json(
            g,
            &id,
            &product,
            created,
            monthly_amount / 2 * 2 + 100,
            Some("month"),
            false,
        );
        g.put(&v, None, created);
    }
}

fn deleted_products(g: &mut Gen, n: usize) {
    for i in 0..n {
        let created = g.time_between(g.start, g.anchor - 40 * 86_400);
        let product = g.id("prod_");
        let price = g.id("price_");
        let name = format!("Retired {}", NOUNS[i % NOUNS.len()]);
        let pv = product_json(g, &product, created, &name, None, false);
        g.put(&pv, None, created);
        let v = price_json(g, &price, &product, created, 900, Some("month"), false);
        g.put(&v, None, created);
        let plan = plan_json(g, &v, 900, "month");
        g.put(&plan, None, created);
        // A legacy plan created through the Plans API, with its own id.
        let legacy = g.id("plan_");
        let mut lp = plan.clone();
        lp["id"] = Value::String(legacy);
        g.put(&lp, None, created);
        // Half are deleted inside the event window, so their `*.deleted` events are listed.
        let t = if i % 2 == 0 {
            g.time_between(g.anchor - 25 * 86_400, g.anchor - 3600)
        } else {
            g.time_between(created, g.anchor - 31 * 86_400)
        };
        g.delete(t, &plan);
        g.delete(t, &lp);
        g.delete(t, &v);
        g.delete(t, &pv);
    }
}

fn coupons_and_promotions(g: &mut Gen, customers: usize, cat: &mut Catalog) {
    let n = 4 + customers / 500;
    for i in 0..n {
        let created = g.time_between(g.start, g.anchor - 2 * 86_400);
        let id = crate::ids::make(&mut g.rng, "", 8).to_uppercase();
        let percent = g.chance(0.6);
        let duration = ["once", "repeating", "forever"][i % 3];
        let times = g.rng.gen_range(0..50);
        let v = super::shaped(
            g.mode,
            "coupon",
            json!({
                "id": id, "object": "coupon", "amount_off": if percent { Value::Null } else { json!(g.rng.gen_range(1..=20) * 500) },
                "created": created, "currency": if percent { Value::Null } else { json!("usd") }, "duration": duration,
                "duration_in_months": if duration == "repeating" { json!(3) } else { Value::Null },
                "max_redemptions": null, "metadata": {}, "name": format!("Promo {}", i + 1),
                "percent_off": if percent { json!([10.0, 15.0, 20.0, 25.0, 50.0][i % 5]) } else { Value::Null },
                "redeem_by": null, "times_redeemed": times, "valid": true,
            }),
        );
        g.put(&v, None, created);
        g.event(created, "coupon.created", &v, None);
        if i % 7 == 3 {
            let t = g.time_between(created, g.anchor - 60);
            g.delete(t, &v);
            continue;
        }
        cat.coupons.push(id.clone());
        for k in 0..(1 + i % 2) {
            let pc = g.time_between(created, g.anchor - 3600);
            let pid = g.id("promo_");
            let code = format!(
                "{}{}",
                ["SPRING", "WELCOME", "FRIENDS", "LAUNCH", "VIP"][(i + k) % 5],
                10 + (i * 7 + k) % 90
            );
            let p = super::shaped(
                g.mode,
                "promotion_code",
                json!({
                    "id": pid, "object": "promotion_code", "active": k == 0, "code": code, "created": pc,
                    "customer": null, "expires_at": null, "max_redemptions": null, "metadata": {},
                    "restrictions": {"first_time_transaction": false, "minimum_amount": null, "minimum_amount_currency": null},
                    "times_redeemed": times / 2, "promotion": {"coupon": id, "type": "coupon"},
                }),
            );
            g.put(&p, None, pc);
            g.event(pc, "promotion_code.created", &p, None);
        }
    }
}
