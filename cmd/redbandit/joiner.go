package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/joiner"
)

// joinerFlags are the flags of the joiner, run by trainer or on its own.
func joinerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "decisions-topic", Value: decision.DefaultTopic, EnvVars: []string{"REDBANDIT_DECISIONS_TOPIC"},
			Usage: "decision log the joiner reads (rewards by event id); empty: no joiner in the trainer"},
		&cli.DurationFlag{Name: "reward-wait", Value: joiner.DefaultRewardWait, EnvVars: []string{"REDBANDIT_REWARD_WAIT"},
			Usage: "how long a decision waits for rewards before its other shown products count with reward 0"},
		&cli.StringFlag{Name: "impressions", Value: joiner.ImpressionsAll, EnvVars: []string{"REDBANDIT_IMPRESSIONS"},
			Usage: "shown products that count with reward 0 when the wait ends: all, or above (only those above the click; all without a click)"},
		&cli.StringFlag{Name: "joiner-group", Value: joiner.DefaultGroup, EnvVars: []string{"REDBANDIT_JOINER_GROUP"},
			Usage: "the joiner's consumer group"},
		&cli.StringFlag{Name: "transactional-id", EnvVars: []string{"REDBANDIT_TRANSACTIONAL_ID"}, DefaultText: "<joiner-group>-<host name>-<pid>",
			Usage: "the joiner's Kafka transactional id: unique per running joiner; keep it across restarts to recover at once"},
	}
}

// joinerConfig reads the joiner flags; dlq is the trainer's dead-letter
// topic ("" for the default).
func joinerConfig(c *cli.Context, dlq string) joiner.Config {
	return joiner.Config{
		Brokers: c.StringSlice("brokers"), DecisionsTopic: c.String("decisions-topic"), FeedbackTopic: c.String("topic"),
		DLQTopic: dlq, Group: c.String("joiner-group"), TransactionalID: c.String("transactional-id"),
		Partitions: int32(c.Int("partitions")), RewardWait: c.Duration("reward-wait"), Impressions: c.String("impressions"),
		Model: c.String("model"), Logger: slog.Default(),
	}
}

func joinerCommand() *cli.Command {
	return &cli.Command{
		Name:  "joiner",
		Usage: "join rewards by event id to the logged decisions into feedback events (runs until SIGTERM; trainer runs one by default)",
		Flags: append(kafkaFlags(), append(joinerFlags(),
			&cli.StringFlag{Name: "dlq-topic", EnvVars: []string{"REDBANDIT_DLQ_TOPIC"},
				DefaultText: "<topic>.dlq", Usage: "dead-letter topic of late, unknown and duplicate rewards"},
		)...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return errors.New("joiner takes no arguments")
			}
			if c.String("decisions-topic") == "" {
				return errors.New("joiner: --decisions-topic is empty")
			}
			return joiner.Run(c.Context, joinerConfig(c, c.String("dlq-topic")))
		},
	}
}

// runWithJoiner runs train and, if cfg is not nil, the joiner next to it
// from the moment started is closed (the trainer has read its model and
// made its topics), until both end. A joiner that fails on its own stops
// the trainer and its error is returned; what it says while being stopped
// is not an error of the run.
func runWithJoiner(ctx context.Context, cfg *joiner.Config, started <-chan struct{}, train func(context.Context) error) error {
	if cfg == nil {
		return train(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg         sync.WaitGroup
		joinFailed error // set before wg.Done, read after wg.Wait
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-started:
		case <-ctx.Done():
			return
		}
		if err := joiner.Run(ctx, *cfg); err != nil && ctx.Err() == nil {
			joinFailed = err
			cancel()
		}
	}()
	err := train(ctx)
	cancel()
	wg.Wait()
	if joinFailed != nil {
		return joinFailed
	}
	return err
}
