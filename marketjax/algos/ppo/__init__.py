"""PPO (Schulman et al. 2017): the baseline the markets are compared with."""
