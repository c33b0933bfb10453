"""What the generator knows of how people ask about tables: column concepts and entities.

A question rarely says `year_built`: it says "built before 1900", "the newest", "When was ...
built?". A `Concept` is one kind of column (an age, a price, a country, an owner) with the
names a table gives it, the words a question uses for it, the values it holds, and the phrases
that name it only by implication: a wh-word ("Who", "When", "Where", "How old"), a superlative
("the oldest"), a comparison ("older than 30"), a value in a preposition ("from Peru", "in
Paris", "directed by Ana Silva") or a value used as an adjective ("red cars").

An `Entity` is a kind of table people keep (castles, wines, podcasts): its names, the column
that names a row, and the concepts its columns may be. `LINKS` are pairs of entities a foreign
key joins. `WIKI_TABLES` are column sets of the kind the public dataset's WikiSQL rows have
(sports results, charts, lists), in domains of their own.

These are the kit's own words, written from general knowledge of how tables and questions look;
the hand-written evaluation sets (`tunekit.eval_sets`) are about other domains, and no question
of the test set is a sentence the generator makes (tests/test_eval_sets.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _lines(text: str) -> tuple[str, ...]:
    """One item per line (items may hold spaces)."""
    return tuple(line.strip() for line in text.strip().splitlines() if line.strip())


# Values (as a table holds them; WikiSQL-style rows lower-case them)
COUNTRIES = _lines("""
    Argentina
    Australia
    Austria
    Belgium
    Bolivia
    Brazil
    Bulgaria
    Canada
    Chile
    China
    Colombia
    Croatia
    Cuba
    Denmark
    Ecuador
    Egypt
    Estonia
    Ethiopia
    Finland
    France
    Germany
    Ghana
    Greece
    Hungary
    Iceland
    India
    Indonesia
    Iran
    Ireland
    Israel
    Italy
    Jamaica
    Jordan
    Kazakhstan
    Latvia
    Lebanon
    Lithuania
    Malaysia
    Mexico
    Mongolia
    Morocco
    Nepal
    Netherlands
    New Zealand
    Nigeria
    Norway
    Pakistan
    Paraguay
    Philippines
    Poland
    Portugal
    Romania
    Senegal
    Serbia
    Singapore
    Slovakia
    Slovenia
    South Africa
    South Korea
    Spain
    Sri Lanka
    Sweden
    Switzerland
    Tanzania
    Thailand
    Tunisia
    Turkey
    Uganda
    Ukraine
    United Kingdom
    United States
    Uruguay
    Venezuela
    Vietnam
    Zambia
""")
CITIES = _lines("""
    Accra
    Adelaide
    Amsterdam
    Antwerp
    Athens
    Auckland
    Austin
    Baltimore
    Bangkok
    Barcelona
    Basel
    Belgrade
    Bergen
    Bilbao
    Bordeaux
    Bratislava
    Brisbane
    Bristol
    Brno
    Bucharest
    Budapest
    Buenos Aires
    Calgary
    Cape Town
    Cardiff
    Casablanca
    Cologne
    Copenhagen
    Cork
    Dakar
    Dallas
    Delhi
    Dresden
    Dublin
    Durban
    Edinburgh
    Florence
    Gdansk
    Geneva
    Genoa
    Glasgow
    Gothenburg
    Graz
    Hamburg
    Hanoi
    Havana
    Helsinki
    Houston
    Istanbul
    Jakarta
    Kyoto
    Krakow
    Lagos
    Leeds
    Lille
    Lima
    Lisbon
    Ljubljana
    Lyon
    Madrid
    Malmo
    Manila
    Marseille
    Melbourne
    Milan
    Montreal
    Mumbai
    Munich
    Nairobi
    Naples
    Nantes
    Oslo
    Ottawa
    Perth
    Porto
    Prague
    Quito
    Riga
    Rotterdam
    Salzburg
    San Diego
    Santiago
    Seoul
    Seville
    Sofia
    Stockholm
    Tallinn
    Tampere
    Toronto
    Toulouse
    Turin
    Utrecht
    Valencia
    Vancouver
    Vienna
    Vilnius
    Warsaw
    Winnipeg
    Zagreb
    Zurich
""")
REGIONS = _lines("""
    North
    South
    East
    West
    Northeast
    Northwest
    Southeast
    Southwest
    Central
    Highlands
    Lowlands
    Coastal
    Alpine
    Lakeside
    Riverside
    Valley
    Upland
    Delta
    Plains
    Peninsula
""")
FIRST = _w("""
    Ada Adam Ahmed Aisha Alan Alba Alice Amir Ana Andrea Anna Anton Arjun Astrid Ben Bianca
    Boris Carl Carmen Chen Chloe Clara Daniel David Diego Elena Elias Emma Erik Eva Fatima
    Felix Frank Freya George Grace Hana Hans Helen Hugo Ian Ingrid Isaac Ivan Jack James Jana
    Javier Jin John Jose Julia Karim Karl Kate Laura Lea Leo Lily Linda Luis Luka Maria Mark
    Marta Max Maya Mei Miguel Mina Mohamed Nina Noah Nora Olga Omar Oscar Paul Pedro Petra
    Rahul Ravi Rita Robert Rosa Ruth Sam Sara Sofia Sven Tara Tom Uma Victor Wei Yuki Zara
""")
LAST = _w("""
    Adams Ahmed Almeida Andersen Baker Bauer Becker Bianchi Brown Carter Castro Chen Clarke
    Costa Cruz Davies Dubois Evans Fischer Garcia Gomez Gonzalez Green Hall Hansen Harris
    Hoffmann Hughes Jensen Johnson Jones Kaur Khan Kim King Klein Kovacs Kumar Larsen Lee Lewis
    Lopez Martin Meyer Moore Morales Muller Murphy Nagy Nguyen Nielsen Novak Olsen Park Patel
    Perez Petrov Quinn Reyes Richter Rossi Ruiz Santos Schmidt Schneider Silva Singh Smith
    Sousa Suzuki Tanaka Taylor Thomas Torres Turner Vargas Walker Wang Weber White Wilson Wong
    Wright Young Zhang
""")
COLORS = _w("red blue green black white yellow orange purple grey silver gold brown pink beige")
LANGUAGES = _w("""
    English Spanish French German Italian Portuguese Dutch Swedish Polish Greek Turkish Arabic
    Hindi Japanese Korean Chinese Russian Finnish Czech Hungarian Swahili Thai
""")
MONTHS = _w("January February March April May June July August September October November December")
DAYS = _w("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
STATUSES = _w("active retired closed open pending cancelled approved suspended completed planned")
LEVELS = _w("beginner intermediate advanced expert basic standard premium deluxe economy luxury")
SIZES = _w("small medium large tiny huge compact")
GENDERS = _w("male female")
SHAPES = _w("round square oval flat tall narrow wide")
ORG_WORDS = _w("""
    Apex Atlas Beacon Blue Cedar Crown Delta Eagle Echo Falcon Golden Granite Harbor Horizon
    Iron Keystone Lakeside Liberty Lion Maple Meridian Nova Oak Orbit Pacific Phoenix Pioneer
    Polar Prime Quantum Red Riverside Royal Silver Sky Star Summit Sun Titan Union Vertex
    Victory Vista Willow Zenith
""")
ORG_KINDS = _w("Group Labs Works Partners Systems Holdings Co Industries Media Studio Press")
TITLE_WORDS = _w("""
    Silent Golden Hidden Broken Last First Lost Wild Blue Crimson Dark Bright Little Long
    Northern Quiet Secret Endless Paper Glass Iron Winter Summer Autumn Spring Midnight
    River Harbor Mountain Garden Shadow Ember Echo Storm Light Stone Moon Star Sea Road
    Crown Feather Orchard Lantern Bridge Island Voyage Journey Letter Song Dream Fire
""")
SPECIES = _w("""
    lion tiger wolf fox bear otter badger eagle owl heron swan crane parrot penguin whale
    dolphin seal shark salmon trout turtle lizard frog beetle moth oak pine maple birch cedar
    willow rose tulip orchid lily fern cactus
""")
TYPES = _w("""
    classic modern vintage electric hybrid manual digital analog organic seasonal regional
    domestic imported public private indoor outdoor annual weekly nightly mobile portable
    solar wooden steel stone coastal urban rural historic experimental commercial amateur
""")


@dataclass(frozen=True)
class Concept:
    """One kind of column: its names, how questions say it, its values, and what implies it."""

    key: str
    names: tuple[str, ...]  # column names a table gives it
    phrases: tuple[str, ...]  # how a question names it ("year built")
    numeric: bool = False
    values: tuple[str, ...] = ()  # text values; numeric ones come from `low`..`high`
    low: int = 0
    high: int = 100
    asked: tuple[str, ...] = ()  # how a question asks for it unnamed: "Who", "When", "How old"
    said: tuple[str, ...] = ()  # a value in a phrase after the entity noun: "from {v}"
    adjective: bool = False  # its value reads before the noun: "red cars", "premium members"
    more: tuple[str, ...] = ()  # the superlative of the largest value: "oldest"
    less: tuple[str, ...] = ()  # of the smallest: "youngest"
    above: tuple[str, ...] = ()  # "older than {v}"
    below: tuple[str, ...] = ()  # "younger than {v}"
    person: bool = False  # holds people's names ("Who ...?")
    noun: bool = False  # its value can be the question's noun ("How many owls ...?")
    verb: tuple[str, ...] = ()  # "Who {verb} X?": "owns", "directed"; its passive: `said`


def _person(key: str, names: str, phrases: str, verb: str = "", said: str = "") -> Concept:
    return Concept(
        key,
        _w(names),
        _lines(phrases),
        values=(),
        asked=("Who",),
        person=True,
        verb=_lines(verb),
        said=_lines(said),
    )


def _number(key: str, names: str, phrases: str, low: int, high: int, **words: str) -> Concept:
    """A numeric concept; `words` are its lists (one per line): more, less, above, below,
    asked, said."""
    return Concept(
        key, _w(names), _lines(phrases), True, (), low, high,
        **{k: _lines(v) for k, v in words.items()},  # type: ignore[arg-type]
    )  # fmt: skip


def _text(key: str, names: str, phrases: str, values: tuple[str, ...], **words: object) -> Concept:
    lists = {k: _lines(v) for k, v in words.items() if isinstance(v, str)}
    flags = {k: v for k, v in words.items() if isinstance(v, bool)}
    return Concept(key, _w(names), _lines(phrases), False, values, **lists, **flags)  # type: ignore[arg-type]


YEAR_WORDS = {
    "more": "newest\nmost recent\nlatest",
    "less": "oldest\nearliest",
    "above": "after {v}\nsince {v}\nlater than {v}",
    "below": "before {v}\nearlier than {v}\nprior to {v}",
}

CONCEPTS: dict[str, Concept] = {
    c.key: c
    for c in (
        # who
        _person("owner", "owner owner_name", "owner", "owns\nowned", "owned by {v}\nthat {v} owns"),
        _person(
            "manager",
            "manager manager_name",
            "manager",
            "manages\nmanaged",
            "managed by {v}\nrun by {v}",
        ),
        _person("director", "director", "director", "directed", "directed by {v}"),
        _person(
            "author", "author writer", "author\nwriter", "wrote\nwritten", "written by {v}\nby {v}"
        ),
        _person("designer", "designer", "designer", "designed", "designed by {v}"),
        _person("founder", "founder", "founder", "founded", "founded by {v}"),
        _person("host", "host presenter", "host\npresenter", "hosts\nhosted", "hosted by {v}"),
        _person("captain", "captain skipper", "captain\nskipper", "captains", "captained by {v}"),
        _person(
            "coach",
            "coach trainer",
            "coach\ntrainer",
            "coaches\ntrains",
            "coached by {v}\ntrained by {v}",
        ),
        _person("ceo", "ceo chief_executive", "CEO\nchief executive", "runs\nleads", "led by {v}"),
        _person("architect", "architect", "architect", "designed", "designed by {v}"),
        _person("winner", "winner champion", "winner\nchampion", "won", "won by {v}"),
        # places
        _text(
            "country",
            "country nation country_of_origin",
            "country\nnation",
            COUNTRIES,
            said="from {v}\nin {v}\nbased in {v}",
            asked="Which country\nWhat country",
        ),
        _text(
            "nationality",
            "nationality citizenship",
            "nationality\ncitizenship",
            COUNTRIES,
            said="from {v}",
        ),
        _text(
            "city",
            "city town home_city hometown",
            "city\ntown\nhometown",
            CITIES,
            said="in {v}\nfrom {v}\nlocated in {v}\nbased in {v}",
            asked="Where\nIn which city\nWhat city",
        ),
        _text(
            "location",
            "location site place",
            "location\nsite",
            CITIES,
            said="in {v}\nat {v}\nlocated in {v}",
            asked="Where",
        ),
        _text(
            "region",
            "region area_name district province",
            "region\ndistrict\nprovince",
            REGIONS,
            said="in the {v} region\nin {v}\nfrom the {v} region",
        ),
        # kinds
        _text(
            "color",
            "color colour",
            "color\ncolour",
            COLORS,
            adjective=True,
            said="painted {v}\nthat are {v}\nin {v}",
        ),
        _text(
            "type",
            "type kind category class",
            "type\nkind\ncategory\nclass",
            TYPES,
            adjective=True,
            said="of type {v}\nof the {v} kind\nin the {v} category",
        ),
        _text(
            "status",
            "status state",
            "status",
            STATUSES,
            adjective=True,
            said="that are {v}\nmarked {v}\nwith {v} status",
        ),
        _text(
            "level",
            "level tier grade plan",
            "level\ntier\ngrade\nplan",
            LEVELS,
            adjective=True,
            said="on the {v} plan\nat {v} level\nof {v} grade",
        ),
        _text("size", "size", "size", SIZES, adjective=True, said="of {v} size\nthat are {v}"),
        _text(
            "language",
            "language",
            "language",
            LANGUAGES,
            said="in {v}\nwritten in {v}",
            asked="In what language\nWhich language",
        ),
        _text("gender", "gender sex", "gender\nsex", GENDERS, adjective=True),
        _text("month", "month", "month", MONTHS, said="in {v}", asked="In which month\nWhen"),
        _text(
            "day", "day weekday", "day", DAYS, said="on {v}\non {v}s", asked="On which day\nWhen"
        ),
        _text("shape", "shape", "shape", SHAPES, adjective=True),
        _text(
            "species",
            "species kind animal breed",
            "species\nkind",
            SPECIES,
            noun=True,
            said="of the species {v}\nthat are {v}s",
        ),
        # how many, how much
        _number(
            "age",
            "age age_years",
            "age",
            1,
            99,
            more="oldest\neldest",
            less="youngest",
            above="older than {v}\nover {v} years old\naged over {v}\nabove the age of {v}",
            below="younger than {v}\nunder {v} years old\nunder the age of {v}",
            asked="How old",
        ),
        _number(
            "price",
            "price cost unit_price price_usd",
            "price\ncost",
            1,
            900,
            more="most expensive\npriciest\ncostliest",
            less="cheapest\nleast expensive",
            above="costing more than {v}\npriced above {v}\nmore expensive than {v}\nover {v} dollars",
            below="cheaper than {v}\ncosting less than {v}\nunder {v} dollars\npriced below {v}",
            asked="How much does\nWhat does",
        ),
        _number(
            "salary",
            "salary pay wage annual_salary",
            "salary\npay\nwage",
            20000,
            200000,
            more="highest-paid\nbest-paid\nhighest earning",
            less="lowest-paid\nworst-paid",
            above="earning more than {v}\npaid more than {v}\nwith a salary above {v}",
            below="earning less than {v}\npaid under {v}",
        ),
        _number(
            "height",
            "height height_m height_cm",
            "height",
            2,
            900,
            more="tallest\nhighest",
            less="shortest\nlowest",
            above="taller than {v}\nhigher than {v}",
            below="shorter than {v}\nlower than {v}",
            asked="How tall\nHow high",
        ),
        _number(
            "weight",
            "weight weight_kg mass",
            "weight\nmass",
            1,
            5000,
            more="heaviest",
            less="lightest",
            above="heavier than {v}\nweighing more than {v}\nthat weigh over {v}",
            below="lighter than {v}\nweighing less than {v}\nthat weigh under {v}",
            asked="How heavy\nHow much does",
        ),
        _number(
            "length",
            "length length_km length_m distance",
            "length\ndistance",
            1,
            9000,
            more="longest",
            less="shortest",
            above="longer than {v}\nover {v} long",
            below="shorter than {v}\nunder {v} long",
            asked="How long",
        ),
        _number(
            "speed",
            "speed top_speed max_speed",
            "speed\ntop speed",
            10,
            400,
            more="fastest\nquickest",
            less="slowest",
            above="faster than {v}\nwith a top speed over {v}",
            below="slower than {v}",
        ),
        _number(
            "population",
            "population inhabitants residents",
            "population\ninhabitants",
            1000,
            9000000,
            more="most populous\nbiggest",
            less="least populous\nsmallest",
            above="with more than {v} people\nwith over {v} inhabitants\nhome to more than {v} people",
            below="with fewer than {v} people\nwith under {v} inhabitants",
        ),
        _number(
            "area",
            "area area_km2 size_acres acres",
            "area\nsize",
            1,
            90000,
            more="largest\nbiggest",
            less="smallest",
            above="larger than {v}\nbigger than {v}\ncovering more than {v}",
            below="smaller than {v}\ncovering less than {v}",
        ),
        _number(
            "capacity",
            "capacity seats seating_capacity",
            "capacity\nseats",
            50,
            90000,
            more="largest\nbiggest",
            less="smallest",
            above="holding more than {v}\nwith room for more than {v}\nseating over {v}",
            below="holding fewer than {v}\nseating under {v}",
        ),
        _number(
            "founded",
            "founded year_founded founded_year established founding_year",
            "year founded\nfounding year",
            1800,
            2024,
            asked="When was\nIn what year was",
            said="founded in {v}\nestablished in {v}",
            **{
                **YEAR_WORDS,
                "above": "founded after {v}\nestablished since {v}\nfounded later than {v}",
                "below": "founded before {v}\nestablished before {v}\nfounded earlier than {v}",
            },
        ),
        _number(
            "opened",
            "opened year_opened opening_year opened_year",
            "year opened\nopening year",
            1850,
            2024,
            asked="When was\nIn what year was",
            said="opened in {v}",
            **{
                **YEAR_WORDS,
                "above": "opened after {v}\nthat opened since {v}",
                "below": "opened before {v}\nthat opened earlier than {v}",
            },
        ),
        _number(
            "built",
            "year_built built construction_year built_year",
            "year built\nconstruction year",
            1700,
            2024,
            asked="When was\nIn what year was",
            said="built in {v}\nconstructed in {v}",
            **{
                **YEAR_WORDS,
                "above": "built after {v}\nconstructed after {v}",
                "below": "built before {v}\nconstructed before {v}",
            },
        ),
        _number(
            "released",
            "release_year year_released released released_year",
            "release year\nyear of release",
            1950,
            2024,
            asked="When was\nIn what year was",
            said="released in {v}\nthat came out in {v}",
            **{
                **YEAR_WORDS,
                "above": "released after {v}\nthat came out after {v}",
                "below": "released before {v}\nthat came out before {v}",
            },
        ),
        _number(
            "born",
            "birth_year year_of_birth born",
            "birth year\nyear of birth",
            1920,
            2010,
            asked="When was\nIn what year was",
            said="born in {v}",
            more="youngest",
            less="oldest",
            above="born after {v}",
            below="born before {v}",
        ),
        _number(
            "year",
            "year season_year",
            "year",
            1950,
            2024,
            asked="In what year\nWhen",
            said="in {v}",
            **YEAR_WORDS,
        ),
        _number(
            "hired",
            "hire_year hired_year year_hired hired",
            "hire year\nyear hired",
            1980,
            2024,
            asked="When was\nIn what year was",
            said="hired in {v}\nwho joined in {v}",
            more="newest\nmost recently hired",
            less="longest-serving\nearliest hired",
            above="hired after {v}\nhired since {v}\nwho joined after {v}",
            below="hired before {v}\nwho joined before {v}",
        ),
        _number(
            "joined",
            "join_year joined member_since joined_year",
            "join year\nyear joined",
            1990,
            2024,
            asked="When did\nIn what year did",
            said="who joined in {v}\nmembers since {v}",
            more="newest",
            less="longest-standing",
            above="who joined after {v}\nwho joined since {v}",
            below="who joined before {v}",
        ),
        _number(
            "created",
            "created_year year_created created creation_year",
            "year created\ncreation year",
            1990,
            2024,
            asked="When was\nIn what year was",
            said="created in {v}\nstarted in {v}",
            **{
                **YEAR_WORDS,
                "above": "created after {v}\nstarted after {v}",
                "below": "created before {v}\nstarted before {v}",
            },
        ),
        _number(
            "rating",
            "rating score stars review_score",
            "rating\nscore\nstars",
            1,
            10,
            more="best-rated\nhighest-rated\nbest",
            less="worst-rated\nlowest-rated\nworst",
            above="rated above {v}\nwith a rating over {v}\nscoring more than {v}",
            below="rated below {v}\nwith a rating under {v}",
        ),
        _number(
            "rank",
            "rank ranking position",
            "rank\nranking\nposition",
            1,
            50,
            said="ranked {v}\nin position {v}\nat number {v}",
            above="ranked below {v}",
            below="ranked above {v}\nin the top {v}",
        ),
        _number(
            "duration",
            "duration minutes runtime length_minutes",
            "duration\nrunning time\nlength",
            5,
            300,
            more="longest",
            less="shortest",
            above="longer than {v} minutes\nlasting more than {v} minutes\nover {v} minutes",
            below="shorter than {v} minutes\nunder {v} minutes",
        ),
        _number(
            "revenue",
            "revenue sales turnover income",
            "revenue\nsales\nturnover",
            1000,
            9000000,
            more="highest-grossing\nbiggest-selling\nmost profitable",
            less="lowest-earning",
            above="earning more than {v}\nwith sales above {v}\nwith revenue over {v}",
            below="earning less than {v}\nwith sales under {v}",
        ),
        _number(
            "budget",
            "budget cost_total funding",
            "budget\nfunding",
            1000,
            900000,
            more="most expensive\nbiggest-budget",
            less="cheapest\nlowest-budget",
            above="with a budget over {v}\ncosting more than {v}",
            below="with a budget under {v}",
        ),
        _number(
            "elevation",
            "elevation altitude elevation_m",
            "elevation\naltitude",
            0,
            8800,
            more="highest",
            less="lowest",
            above="higher than {v}\nabove {v} metres",
            below="lower than {v}\nbelow {v} metres",
        ),
        _number(
            "depth",
            "depth depth_m max_depth",
            "depth",
            1,
            1700,
            more="deepest",
            less="shallowest",
            above="deeper than {v}",
            below="shallower than {v}",
            asked="How deep",
        ),
        _number(
            "temperature",
            "temperature temp avg_temp",
            "temperature",
            -30,
            45,
            more="hottest\nwarmest",
            less="coldest",
            above="warmer than {v}\nhotter than {v}",
            below="colder than {v}",
        ),
        _number(
            "employees",
            "employees staff num_employees headcount",
            "employees\nstaff\nworkers",
            1,
            90000,
            more="most employees\nlargest",
            less="fewest employees\nsmallest",
            above="with more than {v} employees\nemploying over {v} people",
            below="with fewer than {v} employees",
            asked="How many employees",
        ),
        _number(
            "members",
            "members num_members membership",
            "members",
            1,
            5000,
            more="most members\nbiggest",
            less="fewest members\nsmallest",
            above="with more than {v} members",
            below="with fewer than {v} members",
            asked="How many members",
        ),
        _number(
            "episodes",
            "episodes num_episodes episode_count",
            "episodes",
            1,
            900,
            more="most episodes",
            less="fewest episodes",
            above="with more than {v} episodes",
            below="with fewer than {v} episodes",
            asked="How many episodes",
        ),
        _number(
            "floors",
            "floors storeys num_floors",
            "floors\nstoreys",
            1,
            160,
            more="most floors\ntallest",
            less="fewest floors",
            above="with more than {v} floors\ntaller than {v} floors",
            below="with fewer than {v} floors",
            asked="How many floors",
        ),
        _number(
            "pages",
            "pages page_count",
            "pages",
            20,
            1500,
            more="longest\nthickest",
            less="shortest\nthinnest",
            above="with more than {v} pages\nover {v} pages long",
            below="with fewer than {v} pages\nunder {v} pages",
            asked="How many pages",
        ),
        _number(
            "players",
            "players num_players",
            "players",
            1,
            12,
            above="for more than {v} players",
            below="for fewer than {v} players",
            asked="How many players",
        ),
        _number(
            "visitors",
            "visitors annual_visitors attendance",
            "visitors\nattendance",
            100,
            900000,
            more="most visited\nbusiest\nmost popular",
            less="least visited\nquietest",
            above="with more than {v} visitors\nvisited by over {v} people",
            below="with fewer than {v} visitors",
        ),
        _number(
            "quantity",
            "quantity stock units amount",
            "quantity\nstock\nunits",
            0,
            900,
            more="most",
            less="fewest",
            above="with more than {v} in stock\nover {v} units",
            below="with fewer than {v} in stock\nunder {v} units",
            asked="How many",
        ),
        _number(
            "goals",
            "goals goals_scored",
            "goals",
            0,
            60,
            more="top-scoring\nmost goals",
            less="fewest goals",
            above="with more than {v} goals\nwho scored over {v} goals",
            below="with fewer than {v} goals",
            asked="How many goals",
        ),
        _number(
            "rooms",
            "rooms bedrooms num_rooms",
            "rooms\nbedrooms",
            1,
            12,
            more="most rooms\nlargest",
            less="fewest rooms\nsmallest",
            above="with more than {v} rooms",
            below="with fewer than {v} rooms",
            asked="How many rooms",
        ),
        _number(
            "rent",
            "rent monthly_rent",
            "rent\nmonthly rent",
            300,
            5000,
            more="most expensive",
            less="cheapest",
            above="renting for more than {v}\nwith rent above {v}",
            below="renting for less than {v}\nwith rent under {v}",
        ),
        _number(
            "abv",
            "abv alcohol_pct",
            "alcohol content\nABV\nstrength",
            1,
            15,
            more="strongest",
            less="weakest\nlightest",
            above="stronger than {v}\nwith more than {v} percent alcohol",
            below="weaker than {v}\nwith less than {v} percent alcohol",
        ),
        _number(
            "donations",
            "donations amount_raised funds_raised",
            "donations\nfunds raised",
            100,
            900000,
            more="most generous\nbiggest",
            less="smallest",
            above="raising more than {v}\nwith donations above {v}",
            below="raising less than {v}",
        ),
        _number(
            "speakers",
            "speakers num_speakers native_speakers",
            "speakers",
            1000,
            900000000,
            more="most spoken\nmost widely spoken",
            less="least spoken",
            above="spoken by more than {v} people\nwith over {v} speakers",
            below="spoken by fewer than {v} people",
            asked="How many people speak",
        ),
        _number(
            "medals",
            "medals gold_medals medal_count",
            "medals",
            0,
            30,
            more="most decorated\nmost medals",
            less="fewest medals",
            above="with more than {v} medals",
            below="with fewer than {v} medals",
            asked="How many medals",
        ),
    )
}


COUNTED = _w("""
    wheels doors stops branches exhibits tracks chapters stores screens lanes towers bells
    windows gates courts pools stages awards titles wins trophies shops beds cabins engines
""")
FLAGGED = _w("pool parking wifi garden garage balcony elevator lift terrace sauna")


def counted(noun: str) -> Concept:
    """A column that counts something the row has: `num_doors`, "How many doors ...?"."""
    return Concept(
        f"count:{noun}",
        (f"num_{noun}", noun, f"{noun}_count", f"number_of_{noun}"),
        (noun, f"number of {noun}"),
        numeric=True,
        low=1,
        high=60,
        asked=(f"How many {noun}",),
        more=(f"most {noun}",),
        less=(f"fewest {noun}",),
        above=(f"with more than {{v}} {noun}", f"with over {{v}} {noun}"),
        below=(f"with fewer than {{v}} {noun}", f"with under {{v}} {noun}"),
    )


def flagged(noun: str) -> Concept:
    """A yes/no column: `has_pool` holds "yes" or "no" ("with a pool")."""
    return Concept(
        f"has:{noun}",
        (f"has_{noun}", noun, f"{noun}_available"),
        (f"has {noun}", noun),
        values=("yes", "no"),
    )


@dataclass(frozen=True)
class Entity:
    """A kind of table: its names (singular, plural), the text column that names its rows,
    and the concepts its other columns may be."""

    singular: str
    plural: str
    label: str  # the naming column: name, title, model, ...
    label_person: bool  # rows are people ("Who is the oldest ...?")
    concepts: tuple[str, ...]
    tables: tuple[str, ...] = ()  # table names (default: singular and plural, snake_case)
    nouns: tuple[str, ...] = field(default=())  # other nouns for a row ("skyscraper")

    @property
    def table_names(self) -> tuple[str, ...]:
        return self.tables or (self.plural.replace(" ", "_"), self.singular.replace(" ", "_"))


def _e(singular: str, plural: str, label: str, concepts: str, person: bool = False,
       tables: str = "", nouns: str = "") -> Entity:  # fmt: skip
    return Entity(singular, plural, label, person, _w(concepts), _w(tables), _lines(nouns))


ENTITIES: tuple[Entity, ...] = (
    _e("castle", "castles", "name", "country region built owner visitors height type"),
    _e("volcano", "volcanoes", "name", "country region elevation year type status"),
    _e("island", "islands", "name", "country area population region elevation"),
    _e("festival", "festivals", "name", "city country month founded visitors type budget"),
    _e("podcast", "podcasts", "title", "host language episodes rating founded type"),
    _e("wine", "wines", "name", "country region year price rating color type"),
    _e("winery", "wineries", "name", "country region founded owner employees"),
    _e("satellite", "satellites", "name", "country year weight type status"),
    _e("newspaper", "newspapers", "name", "city language founded owner type"),
    _e("journalist", "journalists", "name", "age nationality salary gender", person=True),
    _e("phone", "phones", "model", "released price weight color rating", nouns="handset"),
    _e("laptop", "laptops", "model", "released price weight rating size", nouns="notebook"),
    _e("park", "parks", "name", "city area opened visitors type"),
    _e("tree", "trees", "species", "height age type location"),
    _e("bird", "birds", "species", "color weight length region size"),
    _e(
        "sighting",
        "sightings",
        "observer",
        "species location year quantity region",
        person=True,
        nouns="observation",
    ),
    _e("exhibit", "exhibits", "name", "species age weight location"),
    _e("fossil", "fossils", "name", "length weight type region size"),
    _e("language", "languages", "name", "speakers country region type", tables="languages"),
    _e("board game", "board games", "title", "designer players released price rating"),
    _e("comic", "comics", "title", "author released pages rating type", nouns="comic book"),
    _e("character", "characters", "name", "age gender type", person=True),
    _e("charity", "charities", "name", "city founded donations founder employees"),
    _e("donor", "donors", "name", "city age donations", person=True),
    _e("bank", "banks", "name", "country city founded employees revenue ceo"),
    _e("athlete", "athletes", "name", "age country height weight medals gender", person=True),
    _e("lake", "lakes", "name", "country area depth elevation region"),
    _e(
        "skyscraper",
        "skyscrapers",
        "name",
        "city height floors built architect",
        tables="buildings skyscrapers",
        nouns="building\ntower",
    ),
    _e("stadium", "stadiums", "name", "city capacity opened owner type", nouns="arena"),
    _e("conference", "conferences", "name", "city year visitors budget type"),
    _e("speaker", "speakers", "name", "age nationality gender", person=True),
    _e("apartment", "apartments", "address", "city rooms rent area type", nouns="flat\nunit"),
    _e("tenant", "tenants", "name", "age nationality gender", person=True),
    _e("factory", "factories", "name", "city country employees opened type", nouns="plant"),
    _e("motorcycle", "motorcycles", "model", "price weight color type released", nouns="motorbike"),
    _e(
        "theater",
        "theaters",
        "name",
        "city capacity opened owner",
        tables="theaters theatre",
        nouns="theatre",
    ),
    _e("play", "plays", "title", "author year duration rating type"),
    _e("beer", "beers", "name", "abv price type color rating"),
    _e("brewery", "breweries", "name", "city country founded owner employees"),
    _e("plant", "plants", "name", "height color type price size"),
    _e(
        "company",
        "companies",
        "name",
        "country city founded employees revenue ceo type",
        nouns="firm",
    ),
    _e("club", "clubs", "name", "city founded members coach status", nouns="team"),
    _e("player", "players", "name", "age nationality goals height weight salary", person=True),
    _e(
        "spacecraft",
        "spacecraft",
        "name",
        "country year weight status type",
        tables="spacecraft missions",
        nouns="mission",
    ),
    _e("astronaut", "astronauts", "name", "age nationality born gender", person=True),
    _e("perfume", "perfumes", "name", "designer released price size type"),
    _e("tournament", "tournaments", "name", "city country year members type"),
    _e("garden", "gardens", "name", "city area opened visitors owner"),
    _e("volunteer", "volunteers", "name", "age city gender level", person=True),
    _e("warehouse", "warehouses", "name", "city area capacity opened manager"),
    _e(
        "truck",
        "trucks",
        "plate",
        "weight released capacity status",
        tables="trucks vehicles",
        nouns="vehicle",
    ),
    _e("driver", "drivers", "name", "age city salary level", person=True),
)

# Pairs a foreign key joins: (one, many, key). `many` rows belong to a `one` row.
LINKS: tuple[tuple[str, str], ...] = (
    ("winery", "wine"),
    ("newspaper", "journalist"),
    ("park", "tree"),
    ("comic", "character"),
    ("charity", "donor"),
    ("conference", "speaker"),
    ("apartment", "tenant"),
    ("theater", "play"),
    ("brewery", "beer"),
    ("club", "player"),
    ("spacecraft", "astronaut"),
    ("warehouse", "truck"),
    ("truck", "driver"),
    ("garden", "plant"),
    ("company", "factory"),
    ("festival", "volunteer"),
)

# The public dataset's WikiSQL tables: columns of result lists and charts, each a (column,
# question words, kind) with kind: "num" (numbers kept as text), "person", "place", "date",
# "team" or "text" (values of their own).
WIKI_TABLES: tuple[tuple[tuple[str, str, str], ...], ...] = tuple(
    tuple(
        (c.split(":")[0], c.split(":")[1].replace("-", " "), c.split(":")[2]) for c in line.split()
    )
    for line in _lines("""
    week:week:num date:date:date opponent:opponent:team result:result:text game_site:game-site:place attendance:attendance:num record:record:text
    rank:rank:num athlete:athlete:person nation:nation:place time:time:text heat:heat:num lane:lane:num notes:notes:text
    player:player:person country:country:place frames_won:frames-won:num frames_lost:frames-lost:num prize_money:prize-money:num round:round:text
    horse:horse:text jockey:jockey:person trainer:trainer:person odds:odds:text finish:finish:num race:race:text
    rider:rider:person manufacturer:manufacturer:team laps:laps:num time:time:text grid:grid:num points:points:num
    skier:skier:person country:country:place run_1:run-1:text run_2:run-2:text total:total:text rank:rank:num
    rank:rank:num name:name:person nation:nation:place points:points:num placings:placings:num
    player:player:person rating:rating:num country:country:place score:score:text games:games:num
    region:region:place date:date:date label:label:team format:format:text catalog:catalog:text
    rank:rank:num name:name:text city:city:place height_ft:height-ft:num floors:floors:num year:year:num
    rank:rank:num company:company:team headquarters:headquarters:place industry:industry:text sales:sales:num profits:profits:num
    county:county:place population:population:num area:area:num seat:seat:place established:established:num
    season:season:num team:team:team league:league:text wins:wins:num losses:losses:num ties:ties:num finish:finish:text
    year:year:num competition:competition:text venue:venue:place position:position:text event:event:text
    date:date:date home_team:home-team:team score:score:text away_team:away-team:team venue:venue:place crowd:crowd:num
    pick:pick:num player:player:person position:position:text school:school:place team:team:team
    year:year:num title:title:text role:role:text network:network:team notes:notes:text
    name:name:text platform:platform:text genre:genre:text developer:developer:team release_date:release-date:date
    round:round:num opponent:opponent:person method:method:text event:event:text location:location:place res:res:text
    position:position:num driver:driver:person team:team:team laps:laps:num points:points:num
    year:year:num tournament:tournament:text winner:winner:person runner_up:runner-up:person score:score:text
    constituency:constituency:place candidate:candidate:person party:party:team votes:votes:num share:share:text
    district:district:place incumbent:incumbent:person party:party:team first_elected:first-elected:num result:result:text
    stage:stage:num route:route:text distance:distance:text winner:winner:person leader:leader:person
    episode:episode:num title:title:text directed_by:directed-by:person written_by:written-by:person air_date:air-date:date
    date:date:date tournament:tournament:text surface:surface:text opponent:opponent:person score:score:text
    name:name:text location:location:place opened:opened:num capacity:capacity:num tenant:tenant:team
    call_sign:call-sign:text frequency:frequency:text city:city:place owner:owner:team format:format:text
    """)
)
