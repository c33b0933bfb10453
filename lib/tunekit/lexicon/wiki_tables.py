"""Column sets of the kind the public dataset's WikiSQL rows have (`WIKI_TABLES`)."""

from __future__ import annotations

from tunekit.lexicon.words import lines

# The public dataset's WikiSQL tables: columns of result lists and charts, each a (column,
# question words, kind) with kind: "num" (numbers kept as text), "person", "place", "date",
# "team" or "text" (values of their own).
WIKI_TABLES: tuple[tuple[tuple[str, str, str], ...], ...] = tuple(
    tuple(
        (c.split(":")[0], c.split(":")[1].replace("-", " "), c.split(":")[2]) for c in line.split()
    )
    for line in lines("""
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
