"""The demo newsroom's week: 32 articles of our own writing (fiction) over ten topics."""

# (title, summary, tags — the first is the main topic, author)
ARTICLES = [
    ("Aid convoys reach northern Syria after a week of closed crossings",
     "Forty lorries of food and medicine crossed at dawn, the first since the border posts shut "
     "during the storms. Local councils say stocks will last a fortnight.",
     ["Syria", "Diplomacy"], "Rana Haddad"),
    ("Damascus reopens its old souk to evening trade",
     "Merchants in the covered market welcome the longer hours; electricity, they say, is still "
     "the hardest thing to buy.", ["Syria"], "Omar Khalil"),
    ("Syrian returnees weigh rents against rebuilding",
     "Families coming home from Jordan and Lebanon find their streets standing but their flats "
     "stripped. We followed three of them through their first month.",
     ["Syria", "Jordan", "Lebanon"], "Rana Haddad"),
    ("Moscow signals a longer stay at its Mediterranean base",
     "A defence ministry briefing described the naval facility as 'a permanent fixture', the "
     "clearest statement yet of Russia's intentions on the coast.", ["Russia", "Syria"],
     "Elena Markova"),
    ("Russian grain shipments to the region climb for a third month",
     "Port data show wheat arrivals in the eastern Mediterranean at a two-year high, as "
     "importers lock in prices before winter.", ["Russia", "Energy"], "Elena Markova"),
    ("Kremlin envoy tours Gulf capitals ahead of OPEC+ talks",
     "The visit, unannounced until the plane landed, is read as an attempt to keep production "
     "cuts in place into the spring.", ["Russia", "Gulf", "Energy"], "Sami Nasser"),
    ("Amman's water plan: a pipeline from the Red Sea, at last?",
     "Jordan's cabinet approved financing for the desalination project. Engineers say the "
     "first water could flow in 2029; sceptics have heard that before.", ["Jordan", "Energy"],
     "Lina Abu-Zeid"),
    ("Jordanian teachers end strike after pay deal",
     "Schools reopen on Sunday after the union accepted a staged rise, ending a walkout that "
     "kept 1.4 million pupils at home for nine days.", ["Jordan"], "Lina Abu-Zeid"),
    ("Petra visitor numbers recover to pre-pandemic levels",
     "Tourism officials credit cheaper flights and a new night-walk programme; guides say the "
     "crowds are back but spending is not.", ["Jordan"], "Karim Saleh"),
    ("Beirut port rebuild enters its final phase",
     "The new grain silos will be finished by summer, the contractor says. Families of the "
     "blast's victims ask why the inquiry is not.", ["Lebanon"], "Nour Fares"),
    ("Lebanon's parliament fails again to elect a president",
     "The twelfth session ended without a quorum. Diplomats in the capital describe the mood "
     "as 'resigned rather than tense'.", ["Lebanon", "Diplomacy"], "Nour Fares"),
    ("Lebanese banks ease withdrawal limits for small savers",
     "Depositors with less than $5,000 can now take out their money in dollars over six "
     "months, a step economists call overdue and too small.", ["Lebanon"], "Karim Saleh"),
    ("Tehran and Riyadh agree to reopen consulates",
     "The announcement, made in Baghdad, extends last year's thaw to the cities where most "
     "pilgrims and traders travel.", ["Iran", "Gulf", "Diplomacy"], "Sami Nasser"),
    ("Iran's rial slides as sanctions talks stall",
     "The currency lost six per cent on the open market this week. Shopkeepers in Tehran have "
     "stopped printing price tags.", ["Iran"], "Dariush Amini"),
    ("Iranian gas exports to Iraq cut for winter maintenance",
     "Baghdad warns of power cuts in the south; the two governments blame each other for "
     "unpaid bills.", ["Iran", "Energy"], "Dariush Amini"),
    ("Gulf sovereign funds pour money into Levant solar farms",
     "Three deals signed this month will add two gigawatts in Jordan and Syria, if the grid "
     "can carry it.", ["Gulf", "Energy", "Jordan"], "Sami Nasser"),
    ("Qatar mediates a prisoner exchange between rival factions",
     "Twenty-two detainees were handed over at a checkpoint outside Idlib, in the largest swap "
     "in three years.", ["Gulf", "Syria", "Diplomacy"], "Rana Haddad"),
    ("Saudi Arabia's new visa rules open the door to regional workers",
     "The reform lets skilled workers from Jordan, Lebanon and Egypt change employers without "
     "a sponsor's consent.", ["Gulf", "Jordan", "Lebanon"], "Layla Mansour"),
    ("Brent holds above $80 as Gulf producers keep cuts",
     "Traders had expected a looser policy; analysts now see prices steady through the winter.",
     ["Energy", "Gulf"], "Layla Mansour"),
    ("Eastern Mediterranean gas field starts production",
     "The platform's first cargo sails next week. Cyprus, Egypt and Lebanon each claim a say "
     "in where the revenue goes.", ["Energy", "Lebanon", "Diplomacy"], "Nour Fares"),
    ("Power cuts return to Syrian cities as fuel runs short",
     "Aleppo residents report three hours of state electricity a day; generator owners have "
     "doubled their prices.", ["Energy", "Syria"], "Omar Khalil"),
    ("UN envoy proposes a new round of constitutional talks",
     "The committee would meet in Geneva in January, with a narrower agenda and a deadline, "
     "two things past rounds lacked.", ["Diplomacy", "Syria"], "Hélène Dubois"),
    ("Arab League summit sets its agenda: water, refugees, trade",
     "Foreign ministers agreed the draft in Cairo. The harder question, who will pay, was "
     "left for the leaders.", ["Diplomacy", "Jordan", "Gulf"], "Hélène Dubois"),
    ("European ministers visit Beirut with an aid package and conditions",
     "The €500 million offer depends on banking reforms that parliament has blocked for four "
     "years.", ["Diplomacy", "Lebanon"], "Hélène Dubois"),
    ("Turkey and Russia discuss a buffer zone in northern Syria",
     "Officials met in Ankara; the Kurdish administration says nobody asked it.",
     ["Turkey", "Russia", "Syria"], "Elif Yıldız"),
    ("Turkish lira's fall pushes Syrians in Gaziantep to move again",
     "Refugees who built businesses in the border city say rents now take half their income.",
     ["Turkey", "Syria"], "Elif Yıldız"),
    ("Ankara reopens the Kilis crossing for trade",
     "Lorries queued for eight kilometres on the first morning; traders on both sides welcome "
     "the move.", ["Turkey", "Syria"], "Elif Yıldız"),
    ("Egypt's Suez revenues fall as shipping avoids the Red Sea",
     "Canal receipts are down by a third on last year; Cairo is offering discounts to win back "
     "container lines.", ["Egypt", "Energy"], "Youssef Gamal"),
    ("Cairo hosts talks on a Gaza reconstruction fund",
     "Donors pledged $2 billion on the first day; the mechanism for spending it remains "
     "disputed.", ["Egypt", "Diplomacy"], "Youssef Gamal"),
    ("Egyptian wheat imports shift from Russia to France",
     "The state buyer's latest tender went to French cargoes for the first time in a year.",
     ["Egypt", "Russia"], "Youssef Gamal"),
    ("Iraqi Kurdistan oil flows resume through Turkey",
     "The pipeline, shut for eighteen months over a legal dispute, carried its first barrels on "
     "Tuesday.", ["Energy", "Turkey", "Iran"], "Layla Mansour"),
    ("Opinion: the Levant's next crisis is water, and it is already here",
     "Our columnist argues that every border dispute in the region is becoming a quarrel over "
     "rivers and aquifers.", ["Jordan", "Syria", "Diplomacy"], "Hélène Dubois"),
]


# The topics the demo's editors offer readers: (group, name, description); each covers the
# tag of its name.
TOPICS = [
    ("Levant", "Syria", "The war, the return of refugees and the rebuilding."),
    ("Levant", "Lebanon", "Politics, the banks and the port."),
    ("Levant", "Jordan", "Water, the economy and the palace."),
    ("Region", "Egypt", "Cairo, the canal and the Nile."),
    ("Region", "Gulf", "Riyadh, Doha, Abu Dhabi and their money."),
    ("Region", "Iran", "Tehran, sanctions and the streets."),
    ("Region", "Turkey", "Ankara and the border."),
    ("Region", "Russia", "Moscow's hand in the region."),
    ("Themes", "Diplomacy", "Talks, truces and summits."),
    ("Themes", "Energy", "Oil, gas, power and the grid."),
]
