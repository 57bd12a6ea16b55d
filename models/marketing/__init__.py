"""Marketing: experiments, their statistics, attribution, segments and audiences."""
