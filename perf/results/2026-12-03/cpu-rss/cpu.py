import sys, time, os
from confluent_kafka import Producer, Consumer
from confluent_kafka.admin import AdminClient, NewTopic
# usage: cpu.py <broker pid> [messages, default 100000]
pid=int(sys.argv[1]); N=int(sys.argv[2]) if len(sys.argv) > 2 else 100_000; V=b"x"*1000
tck=os.sysconf('SC_CLK_TCK')
def cpu():
    f=open(f"/proc/{pid}/stat").read().split(')')[1].split()
    return (int(f[11])+int(f[12]))/tck
a=AdminClient({'bootstrap.servers':'127.0.0.1:29092'})
a.create_topics([NewTopic('cpu',16,1)])['cpu'].result()
time.sleep(0.5)
c0=cpu(); t0=time.time()
p=Producer({'bootstrap.servers':'127.0.0.1:29092','linger.ms':5,'batch.size':1000000,'acks':'all','compression.type':'none'})
for i in range(N):
    while True:
        try: p.produce('cpu',V,key=str(i%1000).encode()); break
        except BufferError: p.poll(0.01)
p.flush(60)
c1=cpu(); t1=time.time()
c=Consumer({'bootstrap.servers':'127.0.0.1:29092','group.id':'g','auto.offset.reset':'earliest','enable.auto.commit':False,'fetch.max.bytes':52428800})
c.subscribe(['cpu']); got=0; deadline=time.time()+120
while got<N and time.time()<deadline:
    ms=c.consume(10000,1.0); got+=sum(1 for m in ms if m.error() is None)
c2=cpu(); t2=time.time(); c.close()
mb=N*len(V)/1e6
print(f"produced {N} x {len(V)} B = {mb:.0f} MB in {t1-t0:.1f}s: broker cpu {c1-c0:.2f} s = {(c1-c0)/mb*100:.3f} core-s/100MB")
print(f"consumed {got} in {t2-t1:.1f}s: broker cpu {c2-c1:.2f} s = {(c2-c1)/mb*100:.3f} core-s/100MB")
print(f"produce+consume: {(c2-c0)/(2*mb)*100:.3f} core-s per 100 MB moved (200 MB total {c2-c0:.2f} s)")
