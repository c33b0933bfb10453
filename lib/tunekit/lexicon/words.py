"""The values column concepts hold (countries, cities, people's names, colours, kinds), and the
two helpers that split a written list into its items."""

from __future__ import annotations


def w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def lines(text: str) -> tuple[str, ...]:
    """One item per line (items may hold spaces)."""
    return tuple(line.strip() for line in text.strip().splitlines() if line.strip())


# Values (as a table holds them; WikiSQL-style rows lower-case them)
COUNTRIES = lines("""
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
CITIES = lines("""
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
REGIONS = lines("""
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
FIRST = w("""
    Ada Adam Ahmed Aisha Alan Alba Alice Amir Ana Andrea Anna Anton Arjun Astrid Ben Bianca
    Boris Carl Carmen Chen Chloe Clara Daniel David Diego Elena Elias Emma Erik Eva Fatima
    Felix Frank Freya George Grace Hana Hans Helen Hugo Ian Ingrid Isaac Ivan Jack James Jana
    Javier Jin John Jose Julia Karim Karl Kate Laura Lea Leo Lily Linda Luis Luka Maria Mark
    Marta Max Maya Mei Miguel Mina Mohamed Nina Noah Nora Olga Omar Oscar Paul Pedro Petra
    Rahul Ravi Rita Robert Rosa Ruth Sam Sara Sofia Sven Tara Tom Uma Victor Wei Yuki Zara
""")
LAST = w("""
    Adams Ahmed Almeida Andersen Baker Bauer Becker Bianchi Brown Carter Castro Chen Clarke
    Costa Cruz Davies Dubois Evans Fischer Garcia Gomez Gonzalez Green Hall Hansen Harris
    Hoffmann Hughes Jensen Johnson Jones Kaur Khan Kim King Klein Kovacs Kumar Larsen Lee Lewis
    Lopez Martin Meyer Moore Morales Muller Murphy Nagy Nguyen Nielsen Novak Olsen Park Patel
    Perez Petrov Quinn Reyes Richter Rossi Ruiz Santos Schmidt Schneider Silva Singh Smith
    Sousa Suzuki Tanaka Taylor Thomas Torres Turner Vargas Walker Wang Weber White Wilson Wong
    Wright Young Zhang
""")
COLORS = w("red blue green black white yellow orange purple grey silver gold brown pink beige")
LANGUAGES = w("""
    English Spanish French German Italian Portuguese Dutch Swedish Polish Greek Turkish Arabic
    Hindi Japanese Korean Chinese Russian Finnish Czech Hungarian Swahili Thai
""")
MONTHS = w("January February March April May June July August September October November December")
DAYS = w("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
STATUSES = w("active retired closed open pending cancelled approved suspended completed planned")
LEVELS = w("beginner intermediate advanced expert basic standard premium deluxe economy luxury")
SIZES = w("small medium large tiny huge compact")
GENDERS = w("male female")
SHAPES = w("round square oval flat tall narrow wide")
ORG_WORDS = w("""
    Apex Atlas Beacon Blue Cedar Crown Delta Eagle Echo Falcon Golden Granite Harbor Horizon
    Iron Keystone Lakeside Liberty Lion Maple Meridian Nova Oak Orbit Pacific Phoenix Pioneer
    Polar Prime Quantum Red Riverside Royal Silver Sky Star Summit Sun Titan Union Vertex
    Victory Vista Willow Zenith
""")
ORG_KINDS = w("Group Labs Works Partners Systems Holdings Co Industries Media Studio Press")
TITLE_WORDS = w("""
    Silent Golden Hidden Broken Last First Lost Wild Blue Crimson Dark Bright Little Long
    Northern Quiet Secret Endless Paper Glass Iron Winter Summer Autumn Spring Midnight
    River Harbor Mountain Garden Shadow Ember Echo Storm Light Stone Moon Star Sea Road
    Crown Feather Orchard Lantern Bridge Island Voyage Journey Letter Song Dream Fire
""")
SPECIES = w("""
    lion tiger wolf fox bear otter badger eagle owl heron swan crane parrot penguin whale
    dolphin seal shark salmon trout turtle lizard frog beetle moth oak pine maple birch cedar
    willow rose tulip orchid lily fern cactus
""")
TYPES = w("""
    classic modern vintage electric hybrid manual digital analog organic seasonal regional
    domestic imported public private indoor outdoor annual weekly nightly mobile portable
    solar wooden steel stone coastal urban rural historic experimental commercial amateur
""")
