"""Who may work in the console and the admin API: editors, their passwords, console
sessions, API tokens and sign-in throttling. Below the doors (web, cli), above the rest:
it knows nothing of articles or readers, only of the people who act on them."""
