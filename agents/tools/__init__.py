"""Tools around the learners: animations, text-game evaluation, reports of single runs."""
