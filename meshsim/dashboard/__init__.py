"""The web dashboard of a running process and the HTML report of a finished run: one page for both.

A layer of its own that imports only core: it reads a Prometheus registry and the
admin endpoint's `/clusters` answer as plain data (live/admin.py hands them over and
streams the result), and a report as its JSON dict (cli/run.py writes the file). The
page's HTML, CSS and JS are package data in `assets/`, inlined into each page, so the
dashboard works where there is no internet and the report is one file.

    tally.py     a registry's request counters and duration histogram, per caller and service
    sampler.py   successive tallies into rates, error shares and percentiles; the last minutes kept
    view.py      the numbers joined with what `/clusters` says of each service and replica
    stream.py    the /events stream's messages (server-sent events)
    load.py      attempts per replica per second of a run, for the report's load chart
    page.py      the page: the assets inlined, in live mode or with a report's data
"""
