"""The one package that composes services (ingest, storage, modelling, simulate) on a
``Context`` built once by an entry point. Entry points (CLI, API, scheduler) call these
functions and nothing below them.

    context         Context: settings, catalogue, engine, clock, models root, HTTP client
    collect         the one QC store path; live and replay collection; QC re-check
    importer        file import: archive → parse → the store path
    cycle           one forecast cycle (one issue time, one revision, under the issue lock)
    models          champions (the one truth), registration, promotion, rollback, audit
    training        train → judge → register per river (and the pooled choice)
    backtest_files  the bring-your-own-data backtest on CSV files
    demo            the embedded default: simulated history, first champions, one cycle
"""
