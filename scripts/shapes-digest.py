#!/usr/bin/env python3
"""Writes crates/emulator/shapes/digest.json from Stripe's official fixture set.

The digest maps each object type the emulator serves to its top-level fields and the JSON type
of each field's value in Stripe's example ("string", "number", "boolean", "object", "array" or
"null" when the example holds null, so any type or null is allowed). Only names and types are
kept: no value of the fixture file is copied into the project.

Usage: python3 scripts/shapes-digest.py [path/to/fixtures3.json] [path/to/digest.json]
Defaults: ../shared/stripe/fixtures3.json and crates/emulator/shapes/digest.json, relative to the
repository root (the parent of this script's folder).
"""

import json
import os
import sys

# The fixture keys (object types, plus `deleted_*` stubs) of everything the emulator serves.
SERVED = [
    "account",
    "balance",
    "balance_transaction",
    "charge",
    "checkout.session",
    "coupon",
    "credit_note",
    "credit_note_line_item",
    "customer",
    "deleted_coupon",
    "deleted_customer",
    "deleted_plan",
    "deleted_price",
    "deleted_product",
    "dispute",
    "event",
    "invoice",
    "invoiceitem",
    "item",
    "line_item",
    "payment_intent",
    "payment_method",
    "payout",
    "plan",
    "price",
    "product",
    "promotion_code",
    "radar.early_fraud_warning",
    "refund",
    "review",
    "setup_intent",
    "subscription",
    "subscription_item",
    "subscription_schedule",
    "tax_rate",
    "transfer",
]


def json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"unexpected JSON value {type(value)!r}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "shared", "stripe", "fixtures3.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "crates", "emulator", "shapes", "digest.json")
    with open(src, encoding="utf-8") as f:
        resources = json.load(f)["resources"]
    digest = {}
    for name in SERVED:
        example = resources.get(name)
        if example is None:
            sys.exit(f"fixture has no example for {name}")
        # Field order is the fixture's, so the emulator can emit fields in the same order.
        digest[name] = {field: json_type(value) for field, value in example.items()}
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(digest, f, indent=1)
        f.write("\n")
    print(f"wrote {dst}: {len(digest)} types")


if __name__ == "__main__":
    main()
