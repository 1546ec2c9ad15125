"""Deterministic sample data for the demo: a unified customer table and three segments.

Customers CUST-00000 .. hold the emulator's contact i in the `ContactId` column, except for a few
deliberately broken rows, so that a run shows every reason a member can be left out:
- no customer record: segment members that are not in the customer table;
- empty contact ID, malformed contact ID, contact not found in Sales (a GUID Sales does not know);
- contact inactive: the emulator marks a seeded fraction of its contacts inactive.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass

from emulator import data

CONTACT_FIELD = "ContactId"


@dataclass(frozen=True)
class SampleData:
    customers_csv: bytes
    segments: dict[str, list[str]]
    customer_count: int


def customer_id(i: int) -> str:
    return f"CUST-{i:05d}"


def _contact_for(i: int, seed: int) -> str:
    if i % 97 == 5:
        return ""  # empty contact ID
    if i % 89 == 7:
        return f"not-a-guid-{i}"  # malformed
    if i % 83 == 11:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"unknown-contact-{i}"))  # not in Sales
    return data.contact_id(i, seed)


def build(customers: int, seed: int) -> SampleData:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["CustomerId", "FullName", "Email", CONTACT_FIELD, "LifetimeValue"])
    for i in range(customers):
        writer.writerow(
            [
                customer_id(i),
                f"Customer {i}",
                f"customer{i}@example.com",
                _contact_for(i, seed),
                (i * 37) % 5000,
            ]
        )
    missing = [f"CUST-9{i:04d}" for i in range(25)]  # segment members with no customer record
    segments = {
        "High value": [customer_id(i) for i in range(customers) if (i * 37) % 5000 >= 3500]
        + missing[:10],
        "Lapsed": [customer_id(i) for i in range(0, customers, 3)] + missing[10:],
        "Newsletter": [customer_id(i) for i in range(customers // 2, customers)],
    }
    return SampleData(out.getvalue().encode("utf-8"), segments, customers)


def churned(members: list[str], customers: int, fraction: float = 0.05) -> list[str]:
    """The same segment a week later: a fraction left, as many new members joined."""
    n = max(1, int(len(members) * fraction))
    present = set(members)
    joined = [customer_id(i) for i in range(customers) if customer_id(i) not in present][:n]
    return members[n:] + joined
