# line 1
# line 2
# line 3
# line 4
# line 5
# line 6
# line 7
# line 8
# line 9
# line 10
# line 11
# line 12
# line 13
# line 14
# line 15
class Heartbeat:
    def beat(self):
        self.conn.execute("UPDATE state SET value = ? WHERE key = 'supervisor.heartbeat'", (now(),))
