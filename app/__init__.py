"""mayhold: answers "may we hold X?" with a verdict, the rule, the data and the policy version."""
