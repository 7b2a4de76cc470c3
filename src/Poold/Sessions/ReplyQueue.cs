using System.Threading.Tasks.Sources;

namespace Poold.Sessions;

/// <summary>
/// The queue from a session's client side to its reply pump: one writer, one reader, unbounded, in order. A
/// <c>Channel&lt;T&gt;</c> would do, but costs about 2.4 KB per session even when empty (a 32-slot segment and its
/// waiter objects), which ten thousand idle clients feel; this keeps a small ring that grows only while batches pile
/// up, and reuses its one waiter. A waiting reader continues on the writer's thread, as the channel did with
/// synchronous continuations allowed.
/// </summary>
internal sealed class ReplyQueue<T> : IValueTaskSource<bool>
{
    private readonly Lock _lock = new();
    private T[] _items = [];
    private int _head;
    private int _count;
    private bool _completed;
    private bool _waiting;
    private ManualResetValueTaskSourceCore<bool> _waiter;

    /// <summary>Completed and every item read: the reader is done.</summary>
    public bool IsDone
    {
        get
        {
            lock (_lock)
            {
                return _completed && _count == 0;
            }
        }
    }

    /// <summary>Queues <paramref name="item"/>; false once the queue is completed.</summary>
    public bool TryWrite(T item)
    {
        lock (_lock)
        {
            if (_completed)
            {
                return false;
            }

            if (_count == _items.Length)
            {
                Grow();
            }

            _items[(_head + _count) % _items.Length] = item;
            _count++;
            if (!_waiting)
            {
                return true;
            }

            _waiting = false;
        }

        _waiter.SetResult(true);
        return true;
    }

    public bool TryRead(out T item)
    {
        lock (_lock)
        {
            if (_count == 0)
            {
                item = default!;
                return false;
            }

            item = _items[_head];
            _items[_head] = default!;
            _head = (_head + 1) % _items.Length;
            _count--;
            return true;
        }
    }

    public bool TryPeek(out T item)
    {
        lock (_lock)
        {
            item = _count == 0 ? default! : _items[_head];
            return _count > 0;
        }
    }

    /// <summary>No more writes; a waiting reader wakes (and finds the queue done once it has read what is left).</summary>
    public void Complete()
    {
        lock (_lock)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            if (!_waiting)
            {
                return;
            }

            _waiting = false;
        }

        _waiter.SetResult(false);
    }

    /// <summary>True when an item is there to read, false when the queue is done; waits otherwise. One reader only.</summary>
    public ValueTask<bool> WaitToReadAsync()
    {
        lock (_lock)
        {
            if (_count > 0)
            {
                return ValueTask.FromResult(true);
            }

            if (_completed)
            {
                return ValueTask.FromResult(false);
            }

            _waiter.Reset();
            _waiting = true;
            return new ValueTask<bool>(this, _waiter.Version);
        }
    }

    private void Grow()
    {
        var grown = new T[Math.Max(4, _items.Length * 2)];
        for (var i = 0; i < _count; i++)
        {
            grown[i] = _items[(_head + i) % _items.Length];
        }

        _items = grown;
        _head = 0;
    }

    bool IValueTaskSource<bool>.GetResult(short token) => _waiter.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _waiter.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _waiter.OnCompleted(continuation, state, token, flags);
}
