"""One module per tracker, each with a `Tracker` class (studio.tracking.base.Tracker) and nothing imported from
its package until a run reports to it."""
