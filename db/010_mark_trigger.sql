-- 010: the queue-mark trigger fires on segment changes only. A recipient can join a segment's
-- pending set only through a change of segment_id: 'completed' and 'forgotten' are final (no
-- store statement moves a recipient out of them), and a recipient is 'unaffected' exactly when
-- it has no segment, so unaffected -> pending always sets segment_id too. Declared "OF
-- segment_id, state", the trigger ran on every completion (UPDATE ... SET state = 'completed'):
-- SQLite evaluates a trigger's WHEN inside the trigger's sub-program, so each completing login
-- paid for a sub-program frame, OLD/NEW rows and the WHEN only to find it false. 100,000
-- balanced login events (22,635 completions): 5.638G -> 5.555G instructions (callgrind), 3.7k
-- per completion.
DROP TRIGGER queue_mark_moved;
CREATE TRIGGER queue_mark_moved AFTER UPDATE OF segment_id ON recipient
WHEN NEW.state = 'pending' AND (OLD.segment_id IS NOT NEW.segment_id OR OLD.state <> 'pending')
BEGIN
    DELETE FROM queue_mark;
END;
