"""Make `lib/tunekit/eval_sets/unseen_schemas.jsonl`: the evaluation set of schemas the synthetic
generator never produces (`tunekit.unseen`).

Its tables, columns and values are written here by hand, from words the generator's vocabulary
does not have (tests/test_synthetic.py checks every word). The questions are asked the way the
public dataset asks them (the generator's question shapes), then a few written by hand. The set
is committed; run this only to change it:

    .venv/bin/python tools/make_unseen_set.py
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tunekit import synthetic
from tunekit.eval_sets import UNSEEN_FILE
from tunekit.synthetic import Column, Schema

SEED = 2024
PER_SCHEMA = 8


def text(name: str, *values: str) -> Column:
    return Column(name, False, values)


def number(name: str, low: int, high: int) -> Column:
    return Column(name, True, (low, high))


SCHEMAS = [
    Schema(
        "attendees",
        "attendees",
        (
            text("name", "alice", "bob", "chen", "dana", "eve"),
            number("age", 18, 70),
            text("kubecon", "eu", "na", "india", "japan", "china"),
            text("employer", "acme", "initech", "globex", "umbrella"),
        ),
    ),
    Schema(
        "pets",
        "pets",
        (
            text("pet", "biscuit", "pickles", "muffin", "noodle", "waffles"),
            text("species", "dog", "cat", "parrot", "hamster", "tortoise"),
            text("breed", "beagle", "siamese", "poodle", "persian", "dachshund"),
            number("vet_visits", 0, 12),
            number("kilograms", 1, 60),
        ),
    ),
    Schema(
        "smartphones",
        "smartphones",
        (
            text("handset", "pixel", "galaxy", "iphone", "xperia", "moto"),
            text("os", "android", "ios", "harmonyos", "sailfish"),
            number("ram_gb", 2, 16),
            number("storage_gb", 32, 512),
            number("launched", 2015, 2025),
        ),
    ),
    Schema(
        "cocktails",
        "cocktails",
        (
            text("cocktail", "mojito", "negroni", "daiquiri", "margarita", "sazerac"),
            text("spirit", "rum", "gin", "tequila", "whiskey", "vodka"),
            text("garnish", "mint", "lime", "cherry", "olive", "twist"),
            text("glassware", "highball", "coupe", "tumbler", "flute"),
            number("calories", 90, 400),
        ),
    ),
    Schema(
        "earthquakes",
        "earthquakes",
        (
            text("epicenter", "sendai", "valdivia", "anchorage", "sumatra", "nepal"),
            text("fault", "thrust", "strike slip", "normal", "megathrust"),
            text("tsunami", "yes", "no"),
            number("magnitude", 4, 9),
            number("casualties", 0, 20000),
        ),
    ),
    Schema(
        "repositories",
        "repositories",
        (
            text("repo", "kubectl", "pytorch", "django", "terraform", "kafka"),
            text("maintainer", "cncf", "meta", "hashicorp", "apache", "djangoproject"),
            text("spdx", "mit", "apache-2.0", "bsd-3-clause", "gpl-3.0", "mpl-2.0"),
            number("stars", 1000, 90000),
            number("forks", 100, 30000),
        ),
    ),
    Schema(
        "bicycles",
        "bicycles",
        (
            text("frame", "steel", "aluminium", "carbon", "titanium", "bamboo"),
            text("saddle", "brooks", "selle", "fizik", "specialized"),
            text("retailer", "decathlon", "halfords", "rei", "evans"),
            number("gears", 1, 30),
            number("wheelsize", 16, 29),
        ),
    ),
    Schema(
        "webinars",
        "webinars",
        (
            text("speaker", "grace hopper", "ada lovelace", "alan turing", "linus torvalds"),
            text("webinar", "intro to sql", "gitops basics", "helm deep dive", "vector search"),
            text("tool", "zoom", "webex", "teams", "meet"),
            number("registrants", 10, 900),
            number("duration_min", 15, 120),
        ),
    ),
    Schema(
        "dinosaurs",
        "dinosaurs",
        (
            text("genus", "triceratops", "stegosaurus", "velociraptor", "brachiosaurus"),
            text("era", "jurassic", "cretaceous", "triassic"),
            text("diet", "herbivore", "carnivore", "omnivore"),
            text("discovered_by", "marsh", "cope", "owen", "buckland"),
            number("teeth", 0, 800),
        ),
    ),
    Schema(
        "hackathons",
        "hackathons",
        (
            text("hackathon", "hackmit", "treehacks", "pennapps", "calhacks"),
            text("organiser", "mlh", "devpost", "hackclub"),
            text("challenge", "climate", "fintech", "healthtech", "edtech"),
            number("hackers", 50, 2000),
            number("bounty", 500, 50000),
        ),
    ),
    Schema(
        "subscriptions",
        "subscriptions",
        (
            text("plan", "basic", "premium", "family", "student"),
            text("subscriber", "netflix", "spotify", "disney", "hulu"),
            text("billing", "yearly", "quarterly", "prepaid"),
            number("dollars", 3, 30),
            number("renewals", 0, 40),
        ),
    ),
    Schema(
        "ceremonies",
        "ceremonies",
        (
            text("feature_film", "parasite", "moonlight", "birdman", "spotlight", "argo"),
            text("ceremony", "oscars", "baftas", "cesar", "goya"),
            number("statuettes", 0, 11),
            number("nods_received", 1, 14),
        ),
    ),
]

# Asked as a new user would, in words of their own (the tutorial's question first)
BY_HAND = [
    (
        'What is the total number of attendees with age over 30 at kubecon "eu"?',
        "CREATE TABLE attendees (name VARCHAR, age INTEGER, kubecon VARCHAR)",
        'SELECT COUNT(*) FROM attendees WHERE age > 30 AND kubecon = "eu"',
    ),
    (
        "Which pet has the highest kilograms?",
        "CREATE TABLE pets (pet VARCHAR, species VARCHAR, kilograms INTEGER)",
        "SELECT pet FROM pets ORDER BY kilograms DESC LIMIT 1",
    ),
    (
        "How many smartphones have ram gb over 8?",
        "CREATE TABLE smartphones (handset VARCHAR, os VARCHAR, ram_gb INTEGER)",
        "SELECT COUNT(*) FROM smartphones WHERE ram_gb > 8",
    ),
    (
        "What is the spirit when the cocktail is negroni?",
        "CREATE TABLE cocktails (cocktail VARCHAR, spirit VARCHAR, garnish VARCHAR)",
        'SELECT spirit FROM cocktails WHERE cocktail = "negroni"',
    ),
    (
        "What is the average magnitude when tsunami is yes?",
        "CREATE TABLE earthquakes (epicenter VARCHAR, magnitude INTEGER, tsunami VARCHAR)",
        'SELECT AVG(magnitude) FROM earthquakes WHERE tsunami = "yes"',
    ),
    (
        "Name the repo when the maintainer is hashicorp and spdx is mpl-2.0.",
        "CREATE TABLE repositories (repo VARCHAR, maintainer VARCHAR, spdx VARCHAR)",
        'SELECT repo FROM repositories WHERE maintainer = "hashicorp" AND spdx = "mpl-2.0"',
    ),
    (
        "What is the maximum bounty when the challenge is climate?",
        "CREATE TABLE hackathons (hackathon VARCHAR, challenge VARCHAR, bounty INTEGER)",
        'SELECT MAX(bounty) FROM hackathons WHERE challenge = "climate"',
    ),
    (
        'How many webinars have registrants over 100 and tool "zoom"?',
        "CREATE TABLE webinars (webinar VARCHAR, tool VARCHAR, registrants INTEGER)",
        'SELECT COUNT(*) FROM webinars WHERE registrants > 100 AND tool = "zoom"',
    ),
]


def generate() -> list[dict[str, str]]:
    rng = random.Random(SEED)
    templates = [template for _, template in synthetic.TEMPLATES]
    rows = [dict(zip(("question", "context", "answer"), row, strict=True)) for row in BY_HAND]
    for schema in SCHEMAS:
        for i in range(PER_SCHEMA):
            row = synthetic.Row(rng, schema)
            question, answer = templates[i % len(templates)](row)
            rows.append({"question": question, "context": row.context(), "answer": answer})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=UNSEEN_FILE.parent, help="a folder")
    target = parser.parse_args().output / UNSEEN_FILE.name
    rows = generate()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {target}")


if __name__ == "__main__":
    main()
