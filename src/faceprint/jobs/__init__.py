"""Jobs: what a job is (:mod:`.model`), where jobs are kept (:mod:`.store`), who runs them (:mod:`.worker`)."""
