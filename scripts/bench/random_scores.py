import gymnasium as gym, numpy as np, sys
from minatar.gym import register_envs; register_envs()
ids = sys.argv[1:]
for env_id in ids:
    env = gym.make(env_id); rng = np.random.default_rng(0); env.action_space.seed(0)
    rets=[]
    for ep in range(100):
        obs,_ = env.reset(seed=ep); done=False; R=0
        while not done:
            obs,r,term,trunc,_ = env.step(env.action_space.sample()); R+=r; done = term or trunc
        rets.append(R)
    print(env_id, round(float(np.mean(rets)),2), round(float(np.std(rets)),2), flush=True)
