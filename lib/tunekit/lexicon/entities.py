"""The kinds of tables people keep (`Entity`, `ENTITIES`) and the pairs of them a foreign key
joins (`LINKS`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunekit.lexicon.words import lines, w


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
    return Entity(singular, plural, label, person, w(concepts), w(tables), lines(nouns))


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
