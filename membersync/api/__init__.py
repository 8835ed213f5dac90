"""HTTP edges shared by every router: dependencies and error mapping."""
