using Poold.Sessions;

namespace Poold.Tests.Sessions;

public class ReplyQueueTests
{
    [Test]
    public void Items_ComeOutInTheOrderTheyWentIn_AcrossGrowthAndWrapAround()
    {
        var queue = new ReplyQueue<int>();
        var next = 0;
        var expected = 0;
        for (var round = 0; round < 50; round++)
        {
            // Uneven writes and reads move the ring's head around while it grows.
            for (var i = 0; i < round % 7 + 1; i++)
            {
                Assert.That(queue.TryWrite(next++), Is.True);
            }

            for (var i = 0; i < round % 5 + 1 && queue.TryRead(out var item); i++)
            {
                Assert.That(item, Is.EqualTo(expected++));
            }
        }

        while (queue.TryRead(out var item))
        {
            Assert.That(item, Is.EqualTo(expected++));
        }

        Assert.That(expected, Is.EqualTo(next));
    }

    [Test]
    public void TryPeek_ShowsTheHeadWithoutTakingIt()
    {
        var queue = new ReplyQueue<string>();
        Assert.That(queue.TryPeek(out _), Is.False);
        queue.TryWrite("a");
        queue.TryWrite("b");
        Assert.That(queue.TryPeek(out var head), Is.True);
        Assert.That(head, Is.EqualTo("a"));
        Assert.That(queue.TryRead(out var first), Is.True);
        Assert.That(first, Is.EqualTo("a"));
    }

    [Test]
    public async Task AWaitingReader_WakesOnTheWrite_AndAgainForTheNextWait()
    {
        var queue = new ReplyQueue<int>();
        for (var i = 0; i < 3; i++)
        {
            var wait = queue.WaitToReadAsync();
            Assert.That(wait.IsCompleted, Is.False, "nothing queued yet");
            queue.TryWrite(i);
            Assert.That(wait.IsCompleted, Is.True, "the write wakes the reader at once");
            Assert.That(await wait, Is.True);
            Assert.That(queue.TryRead(out var item), Is.True);
            Assert.That(item, Is.EqualTo(i));
        }
    }

    [Test]
    public async Task Complete_WakesTheReader_WhichDrainsWhatIsLeft_ThenIsDone()
    {
        var queue = new ReplyQueue<int>();
        var wait = queue.WaitToReadAsync();
        queue.Complete();
        Assert.That(await wait, Is.False);
        Assert.That(queue.IsDone, Is.True);

        var other = new ReplyQueue<int>();
        other.TryWrite(7);
        other.Complete();
        Assert.That(other.TryWrite(8), Is.False, "no writes after the end");
        Assert.That(other.IsDone, Is.False, "an item is still to be read");
        Assert.That(await other.WaitToReadAsync(), Is.True);
        Assert.That(other.TryRead(out var last), Is.True);
        Assert.That(last, Is.EqualTo(7));
        Assert.That(other.IsDone, Is.True);
        Assert.That(await other.WaitToReadAsync(), Is.False);
    }

    [Test]
    public async Task OneWriterOneReader_OnTwoThreads_LoseAndReorderNothing()
    {
        const int Count = 200_000;
        var queue = new ReplyQueue<int>();
        var reader = Task.Run(async () =>
        {
            var expected = 0;
            while (true)
            {
                while (queue.TryRead(out var item))
                {
                    if (item != expected++)
                    {
                        return -1;
                    }
                }

                if (queue.IsDone || !await queue.WaitToReadAsync())
                {
                    return expected;
                }
            }
        });
        await Task.Run(() =>
        {
            for (var i = 0; i < Count; i++)
            {
                queue.TryWrite(i);
            }

            queue.Complete();
        });
        Assert.That(await reader.WaitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo(Count));
    }
}
