"""The synthetic generator's vocabulary: table names, columns and literal values.

Large on purpose: a model trained on rows drawn from it cannot memorise a few schemas and must
copy the tables, columns and values of each row's context and question into its SQL. The
evaluation set of unseen schemas (`tunekit.unseen`) shares none of these names or values
(tests/test_synthetic.py checks it).
"""

from __future__ import annotations

import random
from pathlib import Path


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Tables, as their rows are called in a question ("How many shipments ...?"); `table_name_N`
# (the public dataset's own naming) is drawn besides these.
TABLES = _words("""
    shipments invoices suppliers warehouses vessels harbours pilots flights airlines runways
    trains stations platforms tickets parcels couriers depots routes trucks drivers tenants
    landlords leases buildings floors elevators bridges tunnels canals dams reservoirs wells
    pipelines turbines generators batteries panels sensors gauges valves pumps engines motors
    tractors harvests orchards vineyards barrels casks breweries bakeries recipes ingredients
    menus dishes chefs waiters diners kitchens pantries ovens museums exhibits paintings
    sculptures galleries curators artists sketches murals novels poems authors editors
    publishers libraries shelves journals magazines columns_written reporters broadcasts
    podcasts episodes_aired channels antennas satellites orbits telescopes comets asteroids
    planets moons craters volcanoes glaciers islands lagoons rivers lakes forests meadows
    gardens greenhouses nurseries seedlings beehives hives farms ranches stables horses
    jockeys races regattas yachts sailors rowers swimmers divers climbers summits trails
    cabins hostels hotels guests bookings lounges casinos arcades theatres concerts bands
    singers albums singles ballads operas choirs orchestras conductors violins pianos drums
    patents inventors startups investors grants loans mortgages accounts ledgers audits
    branches tellers vaults coins stamps medals trophies tournaments leagues fixtures clubs
    squads coaches referees stadiums arenas courts rinks pools gyms lockers uniforms helmets
    schools pupils teachers courses lectures exams semesters campuses dormitories scholars
    clinics nurses surgeons wards patients doses vaccines trials_run labs microscopes
    samples specimens fossils skeletons mines quarries foundries smelters forges mills
    looms fabrics garments tailors boutiques outlets kiosks vendors markets auctions lots
    bidders estates villas cottages castles fortresses towers lighthouses ports ferries
""")

# Columns: a noun alone ("rank"), or a modifier and a noun ("home_team"). A question names a
# column by its words ("home team"). Numeric columns are INTEGER, the others VARCHAR.
TEXT_NOUNS = _words("""
    team opponent venue result party title director location position school nationality
    district manufacturer status format label builder owner country city region province
    county state category genre class brand model maker sponsor captain winner runner_up
    champion nominee incumbent candidate challenger partner producer writer composer
    narrator host guest presenter network broadcaster carrier operator airport destination
    origin terminal route depot surface engine chassis tyre colour color shape material
    style language religion currency capital motto mascot nickname surname forename
    designer architect contractor engineer inspector supervisor manager chairman president
    governor mayor senator minister ambassador secretary treasurer commander pilot crew
    callsign frequency licence license grade tier level division conference zone sector
    series season_title event round_title stage heat lane track circuit course record
    notes remarks comments outcome decision verdict method score_line scoreline attendance_note
    award prize medal trophy honour category_title subject topic theme motif element
""")
NUMERIC_NOUNS = _words("""
    rank week points goals seats year votes wins losses draws laps games matches appearances
    assists rebounds steals blocks saves runs hits innings overs wickets tries conversions
    penalties fouls cards minutes seconds hours days months floors rooms beds doors windows
    gates berths docks bays decks masts cylinders valves_count wheels axles passengers
    crew_size capacity population area height weight length width depth altitude elevation
    speed distance price cost budget revenue profit salary wage tax fee rent deposit
    balance income expenses shares stake quantity stock units orders_placed sales
    returns_filed episodes chapters pages volumes issues editions copies tracks_recorded
    awards_won nominations votes_cast turnout founded established opened closed built
    rebuilt renovated elected retired born died debut pick draft_round number jersey
    squad_number lap_record position_number entry_limit score margin total average tally
    count_of_entries
""")
MODIFIERS = _words("""
    home away first last original current total best worst average previous next winning
    losing opening closing lead main second third final top bottom annual monthly weekly
    daily north south east west upper lower inner outer old new senior junior head deputy
    acting interim regional national local
""")

# Literal values of VARCHAR columns: people, places, things, and made-up words (no model can
# know them: it must copy them from the question).
FIRST_NAMES = _words("""
    aiko bruno carla dmitri esme farid greta hamza ines jonas kenji lucia mateo nadia oskar
    priya quentin rosa stefan tamar ulrich vera wanda xavier yara zoltan amara bastian celine
    dario elif fabian gloria henrik isla joaquin katya leon mirela nico odile pavel renata
    sami tilda umar viggo wren yusuf zelda arno bianca cyrus dagny eamon flora gideon hilde
""")
LAST_NAMES = _words("""
    abara bergstrom castillo delacroix eriksen fontaine gallo haddadi ivanova jansen kowalczyk
    lindqvist moreau nakamura okafor petrov quispe romano sandoval takahashi uribe valdez
    whitfield xu yamamoto zielinski achterberg brannigan cordero dunmore esposito fairbanks
    grimaldi holloway iglesias jaramillo kirchner lombardi mancini novotny ostrowski pellegrini
""")
PLACES = _words("""
    avalon brightwater cedarfield dunmore_bay elmstead fairhaven glenrock harrowgate ironbridge
    juniper_falls kestrel_point larkspur millbrook northgate oakhollow pinecrest queensbury
    ravenswood silverlake thornbury underhill valemont westbrook yarrow_creek zephyr_hills
    ashcombe blackmoor coldharbour deepdale eastwick foxhollow greywater highcliff
""")
THINGS = _words("""
    amber anchor arrow aurora beacon birch blossom boulder breeze canyon cascade cinder clover
    comet copper coral crescent crystal dawn delta drift ember falcon fern flint frost garnet
    harbor hazel heron horizon indigo iris ivory jade jasper juniper kite lantern laurel lotus
    maple marble meadow mist monsoon nectar nova onyx opal orchid pebble pepper phoenix pine
    prairie quartz quill raven reef ridge river saffron sage sapphire shadow sierra slate
    sparrow spruce storm summit tango thistle thunder timber topaz tulip tundra velvet
    violet willow winter zenith
""")
# English words (tools/make_word_list.py: Webster's Second, public domain), none of the
# unseen-schema set's: novel names that read like English, as the set's do
WORDS_FILE = Path(__file__).parent / "words.txt"
WORDS = tuple(
    line for line in WORDS_FILE.read_text().splitlines() if line and not line.startswith("#")
)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def made_up_words(count: int, seed: int = 1234) -> tuple[str, ...]:
    """`count` distinct strings of 4 to 10 random letters, always the same ones: no word the
    model could know, no syllables it could learn to invent, only copy."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < count:
        words["".join(rng.choice(LETTERS) for _ in range(rng.randint(4, 10)))] = None
    return tuple(words)


MADE_UP = made_up_words(20_000)


def column_names() -> tuple[tuple[str, bool], ...]:
    """Every (column name, is numeric) the generator may use."""
    text = [(n, False) for n in TEXT_NOUNS] + [
        (f"{m}_{n}", False) for m in MODIFIERS for n in TEXT_NOUNS
    ]
    numeric = [(n, True) for n in NUMERIC_NOUNS] + [
        (f"{m}_{n}", True) for m in MODIFIERS for n in NUMERIC_NOUNS
    ]
    return tuple(text + numeric)
